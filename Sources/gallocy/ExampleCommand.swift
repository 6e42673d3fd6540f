import ArgumentParser
import Gallocy

/// `gallocy example <name>` (CONTRACT.md 1.4): workloads that share memory across processes.
/// Each process is a member (the flags of `gallocy node`) and cooperates on one job through the
/// shared heap; it prints one JSON line and exits 0 only if the result it verified is correct.
struct ExampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "example",
        abstract: "Run a shared-memory example as one member of a cluster.",
        discussion: """
            Start one process per member, each with the flags of `gallocy node`. A process killed at \
            any instant and started again with the same flags resumes the job. See docs/examples.md.
            """,
        subcommands: [CounterExampleCommand.self, JacobiExampleCommand.self, MatmulExampleCommand.self])
}

struct CounterExampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "counter", abstract: "Increment one shared counter under a lock until it reaches --target.")

    @OptionGroup var flags: NodeFlags
    @Option(help: "The value the counter must reach.") var target: UInt64 = 300
    @Option(name: .customLong("lease-ms"), help: "The lock's lease in milliseconds.") var leaseMillis: Int = 2000

    func validate() throws {
        guard target > 0 else { throw ValidationError("--target must be positive") }
        guard leaseMillis > 0 else { throw ValidationError("--lease-ms must be positive") }
    }

    func run() throws {
        let configuration = try flags.makeConfiguration()
        let participants = 1 + configuration.peers.count
        let target = self.target
        let lease = Duration.milliseconds(leaseMillis)
        let status = ExampleProcess.run(configuration, example: "counter") { member, logger in
            try await CounterExample.run(
                member: member, target: target, participants: participants, lease: lease, logger: logger)
        }
        if status != 0 { throw ExitCode(status) }
    }
}

struct JacobiExampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jacobi",
        abstract: "A heat stencil on a shared grid, rows banded across the members, a barrier per iteration.",
        discussion: """
            Each member computes its band of rows (by its rank among the sorted member ids) from one \
            grid into the other; at the end every member checks the grid bit for bit against a serial \
            run. The sizes of the first process that creates the job win; later processes use the job \
            in the heap.
            """)

    @OptionGroup var flags: NodeFlags
    @Option(help: "Rows of the grid, edges included.") var rows: Int = 256
    @Option(help: "Columns of the grid, edges included.") var cols: Int = 256
    @Option(help: "Jacobi iterations.") var iterations: Int = 150

    func validate() throws {
        if let problem = JacobiExample.Shape(rows: rows, cols: cols, iterations: iterations).problem {
            throw ValidationError(problem)
        }
    }

    func run() throws {
        let configuration = try flags.makeConfiguration()
        let ids = [configuration.id] + Array(configuration.peers.keys)
        let shape = JacobiExample.Shape(rows: rows, cols: cols, iterations: iterations)
        let status = ExampleProcess.run(configuration, example: "jacobi") { member, logger in
            try await JacobiExample.run(ExampleJob(member: member, memberIDs: ids, logger: logger), shape: shape)
        }
        if status != 0 { throw ExitCode(status) }
    }
}

struct MatmulExampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matmul",
        abstract: "C = A x B on shared UInt64 matrices, row tasks taken from a shared counter.",
        discussion: """
            A and B are generated from --seed. Members take tasks (a few rows of C each) with atomicAdd \
            on a shared counter, claim them with a compare-and-swap, and publish each with commit(); at \
            the end every member checks C exactly against a serial product.
            """)

    @OptionGroup var flags: NodeFlags
    @Option(help: "The size of the square matrices (n x n).") var size: Int = 384
    @Option(name: .customLong("rows-per-task"), help: "Rows of C per task.") var rowsPerTask: Int = 8
    @Option(help: "The seed A and B are generated from.") var seed: UInt64 = 42

    func validate() throws {
        let shape = MatmulExample.Shape(n: size, k: size, m: size, seed: seed, rowsPerTask: rowsPerTask)
        if let problem = shape.problem(pageSize: 4096) { throw ValidationError(problem) }
    }

    func run() throws {
        let configuration = try flags.makeConfiguration()
        let ids = [configuration.id] + Array(configuration.peers.keys)
        let shape = MatmulExample.Shape(n: size, k: size, m: size, seed: seed, rowsPerTask: rowsPerTask)
        let status = ExampleProcess.run(configuration, example: "matmul") { member, logger in
            try await MatmulExample.run(ExampleJob(member: member, memberIDs: ids, logger: logger), shape: shape)
        }
        if status != 0 { throw ExitCode(status) }
    }
}
