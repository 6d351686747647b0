/// Turns a `--help` text into man-page roff, so that cprvmm(1) and cprctl(1) are made from
/// the help each program prints and cannot drift from it. The help's layout:
///
///     Usage line
///
///     Description paragraph.
///
///     Heading:
///     ITEM            text of the item
///     ITEM WITH A LONG SYNOPSIS
///          [CONTINUED]
///                     text of the item,
///                     word: a sub-item on a line of its own
///
/// An item line is told apart by the caller's `isItem` (cprvmm's start with '-', cprctl's
/// are indented by two spaces); its text follows a gap of two or more spaces or the lines
/// below it. Blank lines only separate sections.
public enum ManPageFromHelp {
    public static func lines(of help: String) -> [String] {
        help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    /// The paragraph after the usage line, joined into one line, and the lines after it.
    public static func description(of lines: [String]) -> (text: String, rest: ArraySlice<String>) {
        var index = 1
        while index < lines.count, lines[index].isEmpty { index += 1 }
        var paragraph: [String] = []
        while index < lines.count, !lines[index].isEmpty {
            paragraph.append(lines[index])
            index += 1
        }
        return (paragraph.joined(separator: " "), lines[index...])
    }

    /// The roff for the headings and items after the description: `heading` makes the lines
    /// for "Heading:" (given without its colon), items become tagged paragraphs (.TP).
    public static func sections(
        _ lines: ArraySlice<String>, isItem: (String) -> Bool, heading: (String) -> [String]
    ) -> [String] {
        var roff: [String] = []
        var pendingBody: [String] = []
        // An item line followed at once by another (cprctl's stop and cont) shares its text.
        var itemWithoutText = false
        func flush() {
            if !pendingBody.isEmpty { roff.append(escape(pendingBody.joined(separator: " "))) }
            pendingBody = []
        }
        for line in lines {
            if line.isEmpty { continue }
            if line.hasSuffix(":"), !line.hasPrefix(" "), !line.hasPrefix("-") {
                flush()
                roff += heading(String(line.dropLast()))
                itemWithoutText = false
            } else if isItem(line) {
                flush()
                // "-m [size=]megs  set guest RAM ...": the item, then its text on the same line.
                let (item, rest) = splitOption(String(line.drop { $0 == " " }))
                roff += [itemWithoutText ? ".TQ" : ".TP", ".B " + escape(item)]
                itemWithoutText = rest.isEmpty
                if !rest.isEmpty { pendingBody.append(rest) }
            } else {
                let trimmed = String(line.drop { $0 == " " })
                if trimmed.hasPrefix("["), pendingBody.isEmpty, let last = roff.last, last.hasPrefix(".B ") {
                    // A continuation of a long item line belongs to the item: "[,cache=...]"
                    // goes on the option it qualifies, "[--no-probe]" is a word of its own.
                    roff[roff.count - 1] = last + (trimmed.hasPrefix("[,") ? "" : " ") + escape(trimmed)
                } else if let word = trimmed.split(separator: " ").first, word.hasSuffix(":"), !pendingBody.isEmpty {
                    // A sub-item ("accel=kvm: ...", "stdio: ...") starts a line of its own.
                    flush()
                    roff.append(".br")
                    pendingBody.append(trimmed)
                } else {
                    pendingBody.append(trimmed)
                    itemWithoutText = false
                }
            }
        }
        flush()
        return roff
    }

    /// The option part of a help line ("-m [size=]megs") and the text after the gap of two
    /// or more spaces, if any.
    public static func splitOption(_ line: String) -> (String, String) {
        let characters = Array(line)
        guard let gap = characters.indices.first(where: { $0 + 1 < characters.count && characters[$0] == " " && characters[$0 + 1] == " " }) else {
            return (line, "")
        }
        return (String(characters[..<gap]), String(characters[gap...].drop { $0 == " " }))
    }

    /// roff: backslashes doubled, '-' as \-, and no line starting with a control character.
    public static func escape(_ text: String) -> String {
        var escaped = text.map { $0 == "\\" ? "\\e" : $0 == "-" ? "\\-" : String($0) }.joined()
        if escaped.hasPrefix(".") || escaped.hasPrefix("'") { escaped = "\\&" + escaped }
        return escaped
    }
}
