// Snapshots: a follower behind the leader's compacted log receives the leader's latest snapshot
// in chunks, one in flight at a time; it acknowledges each chunk with the number of bytes it
// holds (`snapshotResponse`, `rejectHint` = bytes received), and the whole snapshot, once
// durable, with an `appendResponse` at its index. Heartbeats drive retransmission.

extension RaftNode {
    func sendSnapshot(to node: NodeID) -> Bool {
        guard var pr = progress[node], pr.recentActive else { return false }
        let snapshot = log.storage.snapshot()
        // The log claims to be compacted but the store has no snapshot: nothing to send yet.
        guard !snapshot.isEmpty else { return false }
        pr.becomeSnapshot(snapshot)
        progress[node] = pr
        sendSnapshotChunk(to: node)
        return true
    }

    func sendSnapshotChunk(to node: NodeID) {
        guard let pr = progress[node], pr.state == .snapshot, let snapshot = pr.snapshotInTransit else { return }
        let total = UInt64(snapshot.data.count)
        let offset = min(pr.snapshotAcked, total)
        let end = min(offset + UInt64(max(1, config.snapshotChunkSize)), total)
        let chunk = SnapshotChunk(
            metadata: snapshot.metadata, offset: offset, totalSize: total,
            data: Array(snapshot.data[Int(offset)..<Int(end)]), done: end == total)
        send(
            Message(
                type: .snapshot, to: node, logTerm: snapshot.metadata.term, index: snapshot.metadata.index,
                commit: log.committed, snapshot: chunk))
    }

    func handleSnapshotResponse(_ m: Message) {
        guard var pr = progress[m.from], pr.state == .snapshot, m.index == pr.pendingSnapshot,
            let snapshot = pr.snapshotInTransit
        else { return }
        let total = UInt64(snapshot.data.count)
        if m.reject {
            pr.snapshotAcked = 0
        } else {
            guard m.rejectHint != pr.snapshotAcked, m.rejectHint <= total else { return }
            pr.snapshotAcked = m.rejectHint
        }
        progress[m.from] = pr
        sendSnapshotChunk(to: m.from)
    }

    func handleSnapshotChunk(_ m: Message) {
        guard let chunk = m.snapshot, chunk.metadata.index == m.index, m.index > 0 else { return }
        let metadata = chunk.metadata
        if metadata.index <= log.committed {
            // Stale or duplicate: we are already past it.
            incomingSnapshot = nil
            send(Message(type: .appendResponse, to: m.from, index: log.committed))
            return
        }
        guard chunk.offset <= chunk.totalSize, UInt64(chunk.data.count) <= chunk.totalSize - chunk.offset else { return }
        if var incoming = incomingSnapshot, incoming.metadata == metadata, incoming.totalSize == chunk.totalSize {
            guard UInt64(incoming.data.count) == chunk.offset else {
                // Duplicate or out of order: tell the leader where we are.
                send(Message(type: .snapshotResponse, to: m.from, index: m.index, rejectHint: UInt64(incoming.data.count)))
                return
            }
            incoming.data += chunk.data
            incomingSnapshot = incoming
        } else if chunk.offset == 0 {
            incomingSnapshot = (metadata, chunk.totalSize, chunk.data)
        } else {
            send(Message(type: .snapshotResponse, to: m.from, index: m.index, reject: true))
            return
        }
        let received = UInt64(incomingSnapshot!.data.count)
        if received < chunk.totalSize {
            if chunk.done {
                // The sender says it is complete, but bytes are missing: start over.
                incomingSnapshot = nil
                send(Message(type: .snapshotResponse, to: m.from, index: m.index, reject: true))
            } else {
                send(Message(type: .snapshotResponse, to: m.from, index: m.index, rejectHint: received))
            }
            return
        }
        let snapshot = Snapshot(metadata: metadata, data: incomingSnapshot!.data)
        incomingSnapshot = nil
        if restore(snapshot) {
            send(Message(type: .appendResponse, to: m.from, index: log.lastIndex))
        } else {
            send(Message(type: .appendResponse, to: m.from, index: log.committed))
        }
    }

    /// Installs a complete snapshot from the leader; false if the log already covers it.
    func restore(_ snapshot: Snapshot) -> Bool {
        let meta = snapshot.metadata
        guard meta.index > log.committed else { return false }
        if log.matchTerm(meta.index, meta.term) {
            // Our log already has it: just learn the commit.
            log.commit(to: meta.index)
            return false
        }
        log.restore(snapshot)
        confHistory = [(meta.index, meta.confState)]
        applyConf(meta.confState)
        return true
    }
}
