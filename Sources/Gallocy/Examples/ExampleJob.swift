import Foundation
import Logging

/// What every example process knows about the job it takes part in: the member, the ids of all
/// participants, and how to report progress. The helpers retry what is safe to retry.
package struct ExampleJob: Sendable {
    package let member: Member
    /// Every participant's id, ascending (this member's and every `--peer`'s).
    package let memberIDs: [UInt64]
    package let logger: Logger

    package init(member: Member, memberIDs: [UInt64], logger: Logger) {
        self.member = member
        self.memberIDs = memberIDs.sorted()
        self.logger = logger
    }

    package var participants: Int { memberIDs.count }

    /// This member's position among the sorted ids: its share of the work.
    package var rank: Int { memberIDs.firstIndex(of: member.id) ?? 0 }

    /// The most participants an example keeps per-member words for.
    package static let maxParticipants = 64

    /// Throws unless the job has at most `maxParticipants` members (`example` names it).
    package func requireAtMostMaxParticipants(_ example: String) throws(MemberError) {
        guard participants <= Self.maxParticipants else {
            throw MemberError(.invalidArgument, "the \(example) example runs on at most \(Self.maxParticipants) members")
        }
    }

    /// Runs `write` (plain stores into the heap), then `Member.barrier` with a generation; on
    /// `.unavailable` or `.timeout`, runs `write` again and arrives again. An arrival counts once
    /// per member and generation however often it is sent, and one for a generation that already
    /// opened returns at once (docs/consistency.md, "Barriers"). `write` is repeated because a
    /// release that failed may not have been published (its bytes then read as the cluster
    /// committed them): it must store the same bytes each time.
    package func barrier(
        _ name: String, generation: UInt64, writing write: () -> Void = {}
    ) async throws(MemberError) {
        var attempts = 0
        while true {
            write()
            do throws(MemberError) {
                try await member.barrier(name, participants: participants, generation: generation)
                return
            } catch {
                guard error.code == .unavailable || error.code == .timeout, attempts < 600 else { throw error }
                attempts += 1
                logger.notice(
                    "barrier \(name) generation \(generation): \(error.message); arriving again",
                    metadata: ["attempt": "\(attempts)"])
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Runs `write` (plain stores into the heap), then `Member.commit`; on `.unavailable` or
    /// `.timeout`, both again. A release that failed may or may not have been published, so
    /// `write` must store the same bytes each time (then a repetition is harmless: bytes equal to
    /// the committed ones make no diff).
    package func commit(writing write: () -> Void) async throws(MemberError) {
        var attempts = 0
        while true {
            write()
            do throws(MemberError) {
                try await member.commit()
                return
            } catch {
                guard error.code == .unavailable || error.code == .timeout, attempts < 600 else { throw error }
                attempts += 1
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Runs `body` (an atomic or another single committed call) until it does not fail with
    /// `.unavailable` or `.timeout`. The caller must make a repetition harmless (a failed call
    /// may have taken effect).
    package func retrying<R>(_ body: () async throws(MemberError) -> R) async throws(MemberError) -> R {
        var attempts = 0
        while true {
            do throws(MemberError) {
                return try await body()
            } catch {
                guard error.code == .unavailable || error.code == .timeout, attempts < 600 else { throw error }
                attempts += 1
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// One line on stderr, `progress: <done>/<total> <unit>`: what `gallocy demo` watches to
    /// know when a job is half done, and what a person running an example by hand sees.
    package func progress(_ done: Int, of total: Int, _ unit: String) {
        FileHandle.standardError.write(Data("progress: \(done)/\(total) \(unit) (member \(member.id))\n".utf8))
    }
}
