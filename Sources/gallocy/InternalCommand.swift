import ArgumentParser

/// `gallocy internal ...`: helpers that the test suite runs as child processes. Hidden from help.
struct InternalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "internal",
        abstract: "Child processes for the test suite.",
        shouldDisplay: false,
        subcommands: [
            InternalHoldLockCommand.self, InternalAppendChildCommand.self, InternalVerifyCommand.self,
            InternalTornPageCommand.self, InternalLeaseExpiryCommand.self, InternalLeaseStressCommand.self,
            InternalAllocStressCommand.self,
        ]
    )
}
