import GallocyCodec

extension StateMachine {
    /// What applying one committed entry did: the engine answers the waiting client (found by
    /// `command?.client`) with `result`, which every member computes alike.
    package struct AppliedEntry: Sendable, Hashable {
        /// The entry's log index and term.
        package var index: UInt64
        package var term: UInt64
        /// The decoded command; nil for an entry without one (empty, membership change) or whose
        /// data does not decode.
        package var command: Command?
        /// The outcome: `.noop` for entries without a command, `.rejected(.malformedCommand)` for
        /// data that does not decode, otherwise the command's result (`.atomic(ok:old:)` for an
        /// atomic).
        package var result: ApplyResult

        package init(index: UInt64, term: UInt64, command: Command?, result: ApplyResult) {
            self.index = index
            self.term = term
            self.command = command
            self.result = result
        }
    }
}
