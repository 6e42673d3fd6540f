import ArgumentParser

struct BenchPageTableCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "page-table", abstract: "Not yet built.")
    func run() throws { throw ValidationError("gallocy bench pagetable is not built yet") }
}
