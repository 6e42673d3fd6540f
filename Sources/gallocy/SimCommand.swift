import ArgumentParser

/// `gallocy sim`: runs seeded simulations of the Raft core (see docs/raft.md).
struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sim", abstract: "Not yet built.")
    func run() throws { throw ValidationError("gallocy sim is not built yet") }
}
