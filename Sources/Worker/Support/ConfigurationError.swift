/// A problem with what the user asked for, found while building the machine (a missing
/// file, a bad image, a size the host cannot give). One line that says what and how to fix it.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
