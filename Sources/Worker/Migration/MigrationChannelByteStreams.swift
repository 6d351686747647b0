import Shared

// The channels carry Shared's state streams: StateWriter writes to an outgoing channel,
// StateReader reads from an incoming one.
extension OutgoingMigrationChannel: ByteSink {}
extension IncomingMigrationChannel: ByteSource {}
