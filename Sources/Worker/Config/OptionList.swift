// QEMU's option lists (QemuOpts, util/qemu-option.c): "key=value,key=value".
// - A comma inside a value is written twice: "mem-path=/a,,b" is mem-path "/a,b".
// - The first element may leave out "key=" when the option has an implied key:
//   "-m 512" is size=512, "-machine pc" is type=pc, "-object memory-backend-ram,..." is qom-type=...
// - A bare "key" elsewhere means key=on, and "nokey" means key=off ("server,nowait").
// - A trailing comma is ignored; when a key repeats, the last value wins.

struct OptionList: Equatable {
    struct Item: Equatable {
        var key: String
        var value: String
    }

    enum ParseError: Error, Equatable {
        /// An element such as "=x" has no key.
        case emptyKey(element: String)
        /// A key that is not among the accepted keys.
        case unknownKey(String)
    }

    /// The elements in the order written, repeats included.
    var items: [Item]

    init(items: [Item] = []) {
        self.items = items
    }

    /// The value of `key`; the last one when it is given more than once.
    subscript(key: String) -> String? {
        items.last { $0.key == key }?.value
    }

    /// Parses `text`. When `keys` is nil any key is accepted (and "nokey" stays the flag "nokey");
    /// otherwise a key outside `keys` (after resolving "nokey") is an error.
    static func parse(_ text: String, impliedKey: String?, keys: [String]?) throws(ParseError) -> OptionList {
        var list = OptionList()
        for (position, element) in split(text).enumerated() {
            if let equals = element.firstIndex(of: "=") {
                let key = String(element[..<equals])
                let value = String(element[element.index(after: equals)...])
                guard !key.isEmpty else { throw .emptyKey(element: element) }
                if let keys, !keys.contains(key) { throw .unknownKey(key) }
                list.items.append(Item(key: key, value: value))
            } else if position == 0, let impliedKey {
                list.items.append(Item(key: impliedKey, value: element))
            } else if element.isEmpty {
                throw .emptyKey(element: element)
            } else if let keys {
                if keys.contains(element) {
                    list.items.append(Item(key: element, value: "on"))
                } else if element.hasPrefix("no"), keys.contains(String(element.dropFirst(2))) {
                    list.items.append(Item(key: String(element.dropFirst(2)), value: "off"))
                } else {
                    throw .unknownKey(element)
                }
            } else {
                list.items.append(Item(key: element, value: "on"))
            }
        }
        return list
    }

    /// The elements of `text`, with ",," turned into ",". An empty text has no elements, and a
    /// trailing comma adds none.
    static func split(_ text: String) -> [String] {
        var elements: [String] = []
        var current = ""
        var iterator = text.makeIterator()
        var pending = iterator.next()
        while let character = pending {
            pending = iterator.next()
            if character == "," {
                if pending == "," {
                    current.append(",")
                    pending = iterator.next()
                } else {
                    elements.append(current)
                    current = ""
                }
            } else {
                current.append(character)
            }
        }
        if !current.isEmpty || (elements.isEmpty && !text.isEmpty) {
            elements.append(current)
        }
        return elements
    }
}
