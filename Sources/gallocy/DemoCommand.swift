import ArgumentParser
import Dispatch
import Foundation
import Gallocy
import Glibc

/// `gallocy demo` (CONTRACT.md 1.2): runs with no arguments. Thin: the work is `Demo` in the
/// engine; this parses, prints, and cleans up on Ctrl-C.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the main job: three local processes share one heap; one is killed and comes back.",
        discussion: """
            Starts three `gallocy example` processes on loopback in a temporary directory: a shared \
            counter, then a heat stencil during which one member (the Raft leader) is killed with \
            SIGKILL and restarted. Then it replays every member's log from its own disk, checks that \
            the three heaps are identical and the results right, and exits 0. Ctrl-C stops the members \
            and removes the directory. See docs/examples.md.
            """)

    @Option(help: ArgumentHelp("Jacobi iterations.", visibility: .hidden)) var iterations: Int = 150
    @Option(help: ArgumentHelp("Jacobi grid rows and columns.", visibility: .hidden)) var grid: Int = 128
    @Option(help: ArgumentHelp("The counter's target.", visibility: .hidden)) var target: UInt64 = 150
    @Flag(name: .customLong("keep"), help: ArgumentHelp("Keep the temporary directory.", visibility: .hidden))
    var keep = false

    func validate() throws {
        if let problem = JacobiExample.Shape(rows: grid, cols: grid, iterations: iterations).problem {
            throw ValidationError(problem)
        }
        guard target > 0 else { throw ValidationError("--target must be positive") }
    }

    func run() throws {
        var options = Demo.Options()
        options.jacobi = JacobiExample.Shape(rows: grid, cols: grid, iterations: iterations)
        options.counterTarget = target
        let processes: DemoProcesses
        do { processes = try DemoProcesses(keepDirectory: keep) } catch {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
        // Ctrl-C (or SIGTERM): stop the members, remove the directory, exit 130.
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                FileHandle.standardError.write(
                    Data("\ninterrupted: stopping the members and removing \(processes.directory)\n".utf8))
                processes.cleanUp()
                Glibc.exit(130)
            }
            source.resume()
            sources.append(source)
        }
        defer {
            processes.cleanUp()
            for source in sources { source.cancel() }
        }
        do {
            let demo = try Demo(options: options, processes: processes) { line in
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
            }
            try demo.run()
        } catch {
            let logs = keep ? " (the logs are kept in \(processes.directory))" : " (rerun with --keep to keep the logs)"
            FileHandle.standardError.write(Data("error: the demo failed: \(error.message)\(logs)\n".utf8))
            throw ExitCode(1)
        }
    }
}
