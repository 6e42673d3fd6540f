import ArgumentParser

struct BenchStorageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "storage", abstract: "Not yet built.")
    func run() throws { throw ValidationError("gallocy bench storage is not built yet") }
}
