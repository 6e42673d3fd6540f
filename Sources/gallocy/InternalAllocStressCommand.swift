import ArgumentParser
import Gallocy

/// `gallocy internal alloc-stress`: one member of the layered allocator's stress test
/// (`AllocatorStress`); prints one JSON line and exits 0 only if the final check passed. Started
/// again with the same flags after a crash, it resumes the job.
struct InternalAllocStressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alloc-stress", abstract: "Stress the layered allocator as one member of a cluster.")

    @OptionGroup var flags: NodeFlags
    @Option(help: "Rounds (each: allocations and frees on every thread, then frees of another member's blocks).")
    var rounds = 12
    @Option(help: "Threads per member (at most 4).") var threads = 3
    @Option(help: "Steps per thread and round.") var operations = 1000
    @Option(help: "Blocks of the next member freed per round.") var handoff = 16
    @Option(help: "Seed of the random sizes.") var seed: UInt64 = 1
    @Option(name: .customLong("slabs-per-arena"), help: "64 KiB slabs per arena (for a new directory).")
    var slabsPerArena = 16

    func validate() throws {
        guard rounds > 0, operations > 0 else { throw ValidationError("--rounds and --operations must be positive") }
        guard (1...4).contains(threads) else { throw ValidationError("--threads must be in 1...4") }
        guard (0...256).contains(handoff) else { throw ValidationError("--handoff must be in 0...256") }
    }

    func run() throws {
        let configuration = try flags.makeConfiguration()
        var options = AllocatorStress.Options()
        options.rounds = rounds
        options.threads = threads
        options.operations = operations
        options.handoff = handoff
        options.seed = seed
        options.slabsPerArena = slabsPerArena
        options.participants = 1 + configuration.peers.count
        let job = options
        let status = ExampleProcess.run(configuration, example: "alloc-stress") { member, logger in
            try await AllocatorStress.run(member: member, options: job, logger: logger)
        }
        if status != 0 { throw ExitCode(status) }
    }
}
