import ArgumentParser
import Gallocy

/// `gallocy internal lease-expiry --role holder|taker|observer <node flags>`: one member of the
/// lease-expiry check (`LeaseExpiryCheck`): the holder's release after its lease ran out must be
/// rejected and undone; everyone ends with the taker's value. JSON lines on stdout.
struct InternalLeaseExpiryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease-expiry", abstract: "A holder, taker or observer member of the lease-expiry check.")

    @OptionGroup var flags: NodeFlags
    @Option(help: "holder, taker or observer.") var role: String
    @Option(name: .customLong("lease-ms"), help: "The holder's lock lease in milliseconds.") var leaseMillis: Int = 1500
    @Option(name: .customLong("go-file"), help: "The holder releases, the taker locks, once this file exists.")
    var goFile: String?
    @Option(help: "Members taking part.") var participants: Int?

    func validate() throws {
        guard LeaseExpiryCheck.Role(rawValue: role) != nil else {
            throw ValidationError("--role must be holder, taker or observer")
        }
        guard leaseMillis > 0 else { throw ValidationError("--lease-ms must be positive") }
    }

    func run() throws {
        let configuration = try flags.makeConfiguration()
        var options = LeaseExpiryCheck.Options(role: LeaseExpiryCheck.Role(rawValue: role)!)
        options.leaseMillis = leaseMillis
        options.goFile = goFile
        options.participants = participants ?? (1 + configuration.peers.count)
        let fixed = options
        let status = MemberJobProcess.run(configuration, name: "lease-expiry") { member, _ in
            try await LeaseExpiryCheck.run(member: member, options: fixed)
        }
        if status != 0 { throw ExitCode(status) }
    }
}
