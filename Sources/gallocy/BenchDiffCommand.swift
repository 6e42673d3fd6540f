import ArgumentParser

struct BenchDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diff", abstract: "Not yet built.")
    func run() throws { throw ValidationError("gallocy bench diff is not built yet") }
}
