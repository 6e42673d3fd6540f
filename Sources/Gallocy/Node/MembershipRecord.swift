import GallocyCodec
import GallocyRaft
import GallocyStateMachine

/// What a member does with an applied membership change besides the state machine's `apply`
/// (a no-op for it): it records the member in the page table's `members` table, with the peer
/// address the change carries, so that snapshots carry the addresses (docs/engine.md,
/// "Membership"). Replay must do the same, or its page table digest would differ from the members'.
///
/// The one rule for both: once bootstrapped, the member is removed from the table, and an added
/// one appended with role `voter` or `learner` and its address; the rows are sorted by id. Members
/// (`RaftDriver.applyConfChange`) and the log tool's replay both call this.
package enum MembershipRecord {
    /// A membership change decoded from an entry's data: the nine bytes of `ConfChange`, then
    /// the context (the new member's `host:port`), read the same whether or not this build's
    /// `ConfChange` knows the context.
    package static func decode(_ data: [UInt8]) -> (change: ConfChange, context: [UInt8])? {
        guard data.count >= 9, let change = ConfChange(encoded: Array(data.prefix(9))) else { return nil }
        return (change, Array(data.dropFirst(9)))
    }

    /// Records the change of a `.confChange` entry in `machine`'s members table, as members do.
    package static func apply(_ entry: Entry, to machine: StateMachine) throws(StateMachineError) {
        guard entry.kind == .confChange, let (change, context) = decode(entry.data), machine.settings != nil else {
            return
        }
        var members = try machine.pageTable.members(company: machine.company)
        members.removeAll { $0.id == change.node }
        switch change.kind {
        case .addLearner, .addVoter:
            let address = String(decoding: context, as: UTF8.self)
            members.append(
                GallocyStateMachine.Member(
                    id: change.node, role: change.kind == .addVoter ? "voter" : "learner",
                    address: address.isEmpty ? nil : address))
        case .remove:
            break
        }
        members.sort { $0.id < $1.id }
        try machine.pageTable.setMembers(company: machine.company, members)
    }
}
