import ArgumentParser
import Gallocy

@main
struct GallocyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gallocy",
        abstract: "A distributed shared memory engine: one heap, at the same addresses on every member.",
        version: GallocyVersion.string,
        subcommands: [NodeCommand.self, DemoCommand.self, ExampleCommand.self, LogCommand.self, BenchCommand.self, SimCommand.self, InternalCommand.self]
    )
}
