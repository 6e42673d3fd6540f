import GallocyRaft
import Testing

/// The host contract, on single cores driven by hand.
@Suite struct CoreContractTests {
    func member(_ id: NodeID, voters: [NodeID] = [1, 2, 3]) -> (RaftNode, MemoryStorage) {
        let storage = MemoryStorage(confState: ConfState(voters: voters))
        return (RaftNode(config: RaftConfig(id: id, seed: 1), storage: storage), storage)
    }

    func persist(_ rd: Ready, _ storage: MemoryStorage) {
        if let s = rd.snapshot { storage.applySnapshot(s) }
        storage.append(rd.entries)
        if let hs = rd.hardState { storage.setHardState(hs) }
    }

    @Test func aVoteIsSentOnlyAfterItIsDurable() {
        let (node, storage) = member(2)
        node.step(Message(type: .vote, from: 1, to: 2, term: 5, logTerm: 1, index: 1))
        let rd = node.ready()
        #expect(rd.hardState?.term == 5 && rd.hardState?.vote == 1)
        #expect(!rd.messages.contains { $0.type == .voteResponse })
        persist(rd, storage)
        node.advance()
        let next = node.ready()
        #expect(next.messages.contains { $0.type == .voteResponse && !$0.reject && $0.to == 1 && $0.term == 5 })
    }

    @Test func anAppendIsAcknowledgedOnlyAfterItIsDurable() {
        let (node, storage) = member(2)
        node.step(
            Message(
                type: .append, from: 1, to: 2, term: 2, logTerm: 1, index: 1,
                entries: [Entry(term: 2, index: 2, data: [7])], commit: 1))
        let rd = node.ready()
        #expect(rd.entries.map(\.index) == [2])
        #expect(!rd.messages.contains { $0.type == .appendResponse })
        persist(rd, storage)
        node.advance()
        let next = node.ready()
        #expect(next.messages.contains { $0.type == .appendResponse && !$0.reject && $0.index == 2 })
    }

    @Test func aFailedWriteSendsNothingThatDependsOnIt() {
        let (node, storage) = member(2)
        node.step(Message(type: .vote, from: 1, to: 2, term: 5, logTerm: 1, index: 1))
        _ = node.ready()
        node.reportPersistFailure()
        let retry = node.ready()
        #expect(retry.hardState?.vote == 1, "the hard state is handed out again")
        #expect(!retry.messages.contains { $0.type == .voteResponse })
        persist(retry, storage)
        node.advance()
        #expect(node.ready().messages.contains { $0.type == .voteResponse })
    }

    @Test func aSingleMemberElectsItselfAndCommits() {
        let (node, storage) = member(1, voters: [1])
        node.campaign()
        for _ in 0..<4 where node.hasReady {
            let rd = node.ready()
            persist(rd, storage)
            node.advance()
        }
        #expect(node.role == .leader)
        let index = try? node.propose([1, 2, 3])
        var applied: [Entry] = []
        for _ in 0..<4 where node.hasReady {
            let rd = node.ready()
            persist(rd, storage)
            applied += rd.committedEntries
            node.advance()
        }
        #expect(applied.contains { $0.index == index && $0.data == [1, 2, 3] })
        // A restart comes back from storage with the same term, vote and commit.
        let restarted = RaftNode(config: RaftConfig(id: 1, seed: 2), storage: storage)
        #expect(restarted.term == node.term && restarted.vote == 1 && restarted.committed == node.committed)
    }

    @Test func garbageFromPeersIsIgnored() {
        let (node, _) = member(2)
        let before = node.hardState
        // Wrong recipient, no sender, no term, non-contiguous entries, a bogus snapshot chunk.
        node.step(Message(type: .append, from: 1, to: 3, term: 9))
        node.step(Message(type: .append, from: 0, to: 2, term: 9))
        node.step(Message(type: .heartbeat, from: 1, to: 2, term: 0, commit: 99))
        node.step(
            Message(
                type: .append, from: 1, to: 2, term: 3, logTerm: 1, index: 1,
                entries: [Entry(term: 3, index: 5), Entry(term: 3, index: 9)], commit: 50))
        node.step(
            Message(
                type: .snapshot, from: 1, to: 2, term: 3, index: 10,
                snapshot: SnapshotChunk(
                    metadata: SnapshotMetadata(index: 10, term: 3), offset: 90, totalSize: 10, data: [1, 2], done: true)))
        node.step(Message(type: .heartbeat, from: 1, to: 2, term: 3, commit: 1000))
        #expect(node.lastIndex == 1 && node.committed == 1, "nothing accepted beyond the log")
        #expect(node.term == 3 && before.term == 0)
    }

    @Test func confChangeEncodingRoundTripsAndRejectsGarbage() {
        let change = ConfChange(.addLearner, node: 0x0102_0304_0506_0708)
        #expect(ConfChange(encoded: change.encoded()) == change)
        #expect(ConfChange(encoded: []) == nil)
        #expect(ConfChange(encoded: [9, 1, 0, 0, 0, 0, 0, 0, 0]) == nil)
        #expect(ConfChange(encoded: [1, 0, 0, 0, 0, 0, 0, 0, 0]) == nil)
    }
}
