// The text that -help prints: every option CommandLineParser accepts, in QEMU's layout.

public enum Usage {
    public static let text: String = """
        usage: cprvmm [options]

        cprvmm runs one KVM virtual machine. It takes a subset of QEMU's command line, written
        as for QEMU: single-dash options (--option works too), each followed by at most one
        argument; in key=value,... arguments a comma inside a value is written ",,", and
        on|off also accepts yes|no and true|false. Other QEMU options are refused, never ignored.

        Standard options:
        -h or -help     display this help and exit
        -version        display version information and exit
        -name [guest=]name
                        set the name of the guest
        -machine [type=]pc[,prop=value[,...]]
                        select the emulated machine ('pc' is the only type)
                        accel=kvm: use KVM (the only accelerator, always used)
                        memfd-alloc=on|off: allocate guest RAM with memfd_create (default=off)
                        memory-backend=id: use the -object memory-backend-* with this id
                        as guest RAM
                        x-allow-tsc-mismatch=on|off: take an incoming state whose guest
                        TSC ran at another rate (default=off: refused, naming both)
        -M ...          same as -machine
        -accel kvm      use KVM (the only accelerator, always used)
        -enable-kvm     same as -accel kvm
        -smp [cpus=]n[,maxcpus=n][,sockets=s][,cores=c][,threads=t]
                        set the number of virtual CPUs (1 to 255, default=1); maxcpus must
                        equal cpus (no CPU hotplug), sockets*cores*threads must equal cpus
        -m [size=]megs  set guest RAM size (default=128M); a bare number is in MiB, a K, M,
                        G or T suffix and a fraction (1.5G) are accepted; the size must be
                        a multiple of 4K from 16M to 256G
        -nodefaults     create no default devices (no serial port unless -serial is given)
        -no-user-config accepted for compatibility (cprvmm reads no configuration files)

        Memory backend options:
        -object memory-backend-memfd,id=id,size=size[,share=on|off][,prealloc=on|off]
                        guest RAM in a memfd (share defaults to on)
        -object memory-backend-file,id=id,size=size,mem-path=path[,share=on|off][,prealloc=on|off]
                        guest RAM in a file, e.g. on hugetlbfs or tmpfs (share defaults to off)
        -object memory-backend-ram,id=id,size=size[,share=on|off][,prealloc=on|off]
                        anonymous guest RAM (share defaults to off)
                        for all three: size is in bytes unless suffixed; prealloc=on populates
                        the memory at start-up; the backend must be named by
                        -machine memory-backend=id and, if -m is given too, match its size

        Character device options:
        -serial dev     connect the serial port (COM1) to a host device (default=stdio;
                        at most one -serial):
                        stdio: standard input and output
                        null: a serial port whose output is discarded
                        none: no serial port
                        file:path: write the output to a file
                        unix:path,server=on,wait=off: listen on a Unix socket (cprvmm never
                        waits for a client before starting the guest)

        Display options:
        -display none   no display (the only type: cprvmm has no display)
        -nographic      no display; the serial port stays on stdio unless -serial or
                        -nodefaults is given

        Device options:
        -device isa-debug-exit[,iobase=port][,iosize=n][,id=id]
                        a port where a guest write of V ends cprvmm with exit status
                        (V << 1) | 1, as QEMU's isa-debug-exit (default iobase=0x501,
                        iosize=2; absent unless given)
        -device virtio-blk-pci,drive=id[,id=id][,bootindex=n][,addr=slot]
                        a virtio disk (modern virtio-pci, MSI-X) on the drive named id
        -device virtio-net-pci,netdev=id[,mac=52:54:00:12:34:56][,id=id][,addr=slot]
                [,romfile=path]
                        a virtio NIC on the -netdev named id (checksum and segmentation
                        offloads, mergeable receive buffers, control queue for the receive
                        filter); the default MACs are QEMU's, one per NIC; romfile= puts
                        an option ROM in its ROM BAR, which firmware runs (none by default)

        Network options (a live update keeps the tap open and loses no frame):
        -netdev tap,id=id[,ifname=name|fd=n][,script=no][,downscript=no][,vnet_hdr=on|off]
                        a TAP interface: opened (or created) by name, or an fd the caller
                        opened, as libvirt passes it; cprvmm runs no scripts, has no
                        vhost (it serves the rings itself) and one queue pair
        -nic tap,[netdev options][,mac=mac][,model=virtio-net-pci]
                        a -netdev and its virtio-net-pci NIC in one option

        Block device options (raw images; a live update keeps them open):
        -drive file=path[,format=raw][,if=virtio|none][,readonly=on|off]
               [,cache=writeback|none][,id=id]
                        a raw image; if=virtio also creates its virtio-blk-pci disk
                        (cache=none opens it O_DIRECT); no other format or interface
        -blockdev driver=file,node-name=name,filename=path[,read-only=on|off]
                  [,cache.direct=on|off]
                        a raw image for -device virtio-blk-pci,drive=name (also
                        driver=raw,node-name=name,file=node over it, as libvirt does)
        -boot order=c[,menu=off]
                        boot from the disks (with bootindex= deciding their order)
        -log-level error|warning|info|debug
                        how much cprvmm logs on stderr (default info); under systemd each
                        line carries its priority for journalctl -p
        -debugcon file:path|stdio|null|none
                        QEMU's isa-debugcon: bytes the guest writes to port 0x402 go to the
                        file or stderr (SeaBIOS prints its log there); absent by default
        -global isa-debugcon.iobase=port
                        move the debug console to another port

        Monitor and migration options:
        -qmp unix:path,server=on,wait=off
                        a QMP server on a Unix socket (QEMU's protocol; any number)
        -monitor stdio|none|unix:path,server=on,wait=off
                        the human monitor (HMP) on stdio or a Unix socket
        -S              create the VM paused (run state prelaunch); 'cont' starts it
        -incoming uri   load the VM's state from uri before running it: file:path[,offset=n],
                        unix:path, tcp:host:port, exec:command, memfd: (a live update's
                        inherited state) or defer (wait for migrate-incoming)

        Boot options:
        -kernel file    boot this ELF64 x86-64 kernel in 64-bit mode (not with -bios;
                        entry contract in docs/guest.md)
        -bios file      boot this firmware image (not with -kernel)
        -builtin-guest [fill=pct][,mode=sleep|spin][,ip=addr][,dirty=pct]
                       [,disk=check|randread|randwrite|seqread|seqwrite]
                        set up cprvmm's built-in guest, which runs when neither -kernel nor
                        -bios is given: it fills pct% of guest RAM (0 to 90, default=25)
                        with a pattern, prints 'tick N' about every millisecond and keeps
                        re-verifying the pattern; mode=sleep halts until each 1 kHz timer
                        tick (default, cheap on host CPU), mode=spin busy-loops (benchmarks);
                        with a virtio disk it writes numbered 4 KiB blocks over its first
                        MiB and checks them (disk=check, default), or benchmarks it:
                        disk=randread|randwrite (4 KiB), seqread|seqwrite (1 MiB);
                        with a NIC it answers ARP, ICMP echo and UDP echo (port 7) at its
                        IPv4 address ip= (default 10.0.2.15); dirty=pct rewrites pct% of
                        guest RAM a second (0 to 1000, default 0 = off) in the RAM the fill
                        leaves, each page checked to hold what the sweep before wrote, so
                        a page a migration did not carry over is reported (for migration
                        tests and benchmarks)

        """
}
