/// Serving the queues, on the device thread (VirtioWorker).
extension VirtioPciTransport {
    func processQueues() {
        model.serviceQueues(self)
    }

    /// Takes requests until the ring is empty or a quiesce asks the thread to stop; a quiesce
    /// therefore waits for one request at most, and everything taken is completed.
    func process(_ index: Int) {
        guard var queue = lock.withLock({ registers.driverReady && registers.queues[index].ready ? registers.queues[index] : nil }) else { return }
        var wantsInterrupt = false
        var broken: String?
        while !worker.shouldYield {
            do {
                guard let chain = try queue.pop(memory) else { break }
                let written = model.serve(chain, queue: index, memory: memory)
                if try queue.push(head: chain.head, written: written, memory) { wantsInterrupt = true }
            } catch .badChain(let head, let why) {
                errors.log("\(pciName): \(Virtqueue.Failure.badChain(head: head, why)); returned unserved")
                do {
                    if try queue.push(head: head, written: 0, memory) { wantsInterrupt = true }
                } catch {
                    broken = "\(error)"
                    break
                }
            } catch {
                broken = "\(error)"
                break
            }
        }
        lock.withLock {
            registers.queues[index].nextAvail = queue.nextAvail
            registers.queues[index].nextUsed = queue.nextUsed
            if broken != nil { registers.status |= VirtioPciTransport.statusNeedsReset }
        }
        if let broken {
            errors.log("\(pciName): queue \(index): \(broken); the device needs a reset (the driver must reset it)")
            configChanged()
        }
        if wantsInterrupt { interrupt(queue: index) }
    }

    /// The device's status changed on its own (DEVICE_NEEDS_RESET): a configuration interrupt.
    func configChanged() {
        let vector: UInt16? = lock.withLock {
            registers.configGeneration &+= 1
            guard msixEnabled else {
                registers.isr |= 2
                return nil
            }
            return registers.msixConfig
        }
        if let vector { deliverVector(vector) } else { setIntx(true) }
    }
}
