import ArgumentParser
import GallocyRaft
import GallocyRaftSim

/// `gallocy sim`: runs seeded simulations of the Raft core (see docs/raft.md).
struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Run seeded fault-injection simulations of the Raft core, or benchmark it.",
        discussion: """
            Each seed runs a cluster through lost, duplicated, delayed and reordered messages,
            partitions, crashes and restarts, checking Raft's safety properties after every step.
            The first violation prints its seed and event trace and exits non-zero; re-running
            with --start-seed SEED --seeds 1 reproduces it exactly.
            """)

    @Option(help: "Number of seeds to run.") var seeds: Int = 100
    @Option(help: "Members per cluster.") var members: Int = 3
    @Option(help: "First seed.") var startSeed: UInt64 = 1
    @Option(help: "Steps (ticks) per seed before the final convergence check.") var steps: Int = 1000
    @Flag(help: "Also change membership (learners, promotions, removals) during the runs.")
    var membership = false
    @Option(help: "Trace lines to print on a failure.") var traceLines: Int = 60
    @Flag(help: "Print what each seed exercised (elections, commits, reads, snapshots, transfers).")
    var verbose = false
    @Flag(help: "Benchmark the core instead: proposals committed per second in a 3-member cluster.")
    var bench = false
    @Option(help: "Benchmark: proposals to commit.") var proposals: Int = 200_000
    @Option(help: "Benchmark: proposals the client submits between two rounds of Ready processing.")
    var batch: Int = 64

    func validate() throws {
        guard members >= 1 && members <= 64 else { throw ValidationError("--members must be in 1...64") }
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1") }
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
    }

    func run() throws {
        if bench {
            let result = RaftBenchmark.run(proposals: proposals, members: members, batch: max(1, batch))
            print(result.summary)
            return
        }
        for i in 0..<seeds {
            let seed = startSeed &+ UInt64(i)
            var options = SimOptions.varied(seed: seed, members: members)
            options.steps = steps
            options.traceLength = traceLines
            if membership {
                options.membershipRate = 0.01
                options.spares = 2
            }
            if verbose {
                let sim = Simulator(options: options)
                do { try sim.runRandom() } catch {}
                print("seed \(seed): \(sim.summary)")
            }
            if let violation = Simulator.runSeed(options) {
                print("")
                print("FAILED: \(violation)")
                print("last events:")
                for line in violation.trace { print("  " + line) }
                print("reproduce: gallocy sim --start-seed \(seed) --seeds 1 --members \(members) --steps \(steps)"
                    + (membership ? " --membership" : ""))
                throw ExitCode.failure
            }
            if (i + 1) % 10 == 0 || i + 1 == seeds {
                print("\rseeds \(i + 1)/\(seeds) ok (last \(seed))", terminator: "")
            }
        }
        print("")
    }
}
