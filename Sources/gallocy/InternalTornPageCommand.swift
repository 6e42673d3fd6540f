import ArgumentParser
import Gallocy

/// `gallocy internal torn-page --role writer|reader <node flags>`: one member of the torn-page
/// check (`TornPageCheck`): the writer releases generations of `--pages` pages for `--seconds`,
/// readers read them without locks and count torn reads. JSON lines on stdout; exit 0 if clean.
struct InternalTornPageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torn-page", abstract: "A writer or racy reader member of the torn-page check.")

    @OptionGroup var flags: NodeFlags
    @Option(help: "writer or reader.") var role: String
    @Option(help: "Pages the writer fills with each generation.") var pages: Int = 8
    @Option(help: "Seconds the writer writes.") var seconds: Double = 4
    @Option(help: "Members taking part (the writer and the readers).") var participants: Int?
    @Option(name: .customLong("lease-ms"), help: "The writer's lock lease in milliseconds.") var leaseMillis: Int = 5000

    func validate() throws {
        guard TornPageCheck.Role(rawValue: role) != nil else { throw ValidationError("--role must be writer or reader") }
        guard (1...4096).contains(pages) else { throw ValidationError("--pages must be in 1...4096") }
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
        guard leaseMillis > 0 else { throw ValidationError("--lease-ms must be positive") }
    }

    func run() throws {
        let configuration = try flags.makeConfiguration()
        var options = TornPageCheck.Options(role: TornPageCheck.Role(rawValue: role)!)
        options.pages = pages
        options.seconds = seconds
        options.participants = participants ?? (1 + configuration.peers.count)
        options.leaseMillis = leaseMillis
        let fixed = options
        let status = MemberJobProcess.run(configuration, name: "torn-page") { member, _ in
            try await TornPageCheck.run(member: member, options: fixed)
        }
        if status != 0 { throw ExitCode(status) }
    }
}
