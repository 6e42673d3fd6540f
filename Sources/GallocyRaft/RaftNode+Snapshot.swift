// Snapshots: a follower behind the leader's compacted log receives the leader's latest snapshot
// in chunks, up to `maxInflightMsgs` of them in flight: it keeps only the chunk that continues
// what it holds and answers every chunk with the number of bytes it holds (`snapshotResponse`,
// `rejectHint` = bytes held; `reject` when the chunk did not fit), and the whole snapshot, once
// durable, with an `appendResponse` at its index. The leader moves forward on a larger count,
// back on a rejection with a smaller one, and otherwise resends from the acknowledged offset
// only on a heartbeat answer (go-back-N, paced by heartbeats: no storm under reordering).

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

    /// Sends chunks from `snapshotSent` on, while the window allows (at least one).
    func sendSnapshotChunk(to node: NodeID) {
        guard var pr = progress[node], pr.state == .snapshot, let snapshot = pr.snapshotInTransit else { return }
        let total = UInt64(snapshot.data.count)
        let size = UInt64(max(1, config.snapshotChunkSize))
        let window = UInt64(max(1, config.maxInflightMsgs)) * size
        var offset = min(max(pr.snapshotSent, pr.snapshotAcked), total)
        repeat {
            let end = min(offset + size, total)
            let chunk = SnapshotChunk(
                metadata: snapshot.metadata, offset: offset, totalSize: total,
                data: Array(snapshot.data[Int(offset)..<Int(end)]), done: end == total)
            send(
                Message(
                    type: .snapshot, to: node, logTerm: snapshot.metadata.term, index: snapshot.metadata.index,
                    commit: log.committed, snapshot: chunk))
            offset = end
        } while offset < total && offset - pr.snapshotAcked < window
        pr.snapshotSent = offset
        progress[node] = pr
    }

    func handleSnapshotResponse(_ m: Message) {
        guard var pr = progress[m.from], pr.state == .snapshot, m.index == pr.pendingSnapshot,
            let snapshot = pr.snapshotInTransit
        else { return }
        let total = UInt64(snapshot.data.count)
        guard m.rejectHint <= total else { return }
        if m.reject && m.rejectHint < pr.snapshotAcked {
            // The follower holds less than we thought (it restarted, or an acknowledgement
            // from before its restart arrived late): resume from what it holds.
            pr.snapshotAcked = m.rejectHint
            pr.snapshotSent = m.rejectHint
        } else if m.rejectHint > pr.snapshotAcked {
            pr.snapshotAcked = m.rejectHint
            pr.snapshotSent = max(pr.snapshotSent, pr.snapshotAcked)
            if pr.snapshotSent >= total {
                progress[m.from] = pr
                return
            }
        } else {
            // Repeated, or a chunk arrived ahead of its predecessor (reordering): a heartbeat
            // resends from the acknowledged offset if something was really lost. Resending a
            // window on each of these would flood the link.
            return
        }
        progress[m.from] = pr
        sendSnapshotChunk(to: m.from)
    }

    func handleSnapshotChunk(_ m: Message) {
        guard let chunk = m.snapshot, chunk.metadata.index == m.index, m.index > 0 else { return }
        let metadata = chunk.metadata
        if metadata.index <= log.committed {
            // Stale or duplicate: we are already past it. (A newer transfer in progress, if
            // any, is kept: dropping it would leave the leader sending from an offset we no
            // longer hold.)
            if incomingSnapshot?.metadata == metadata { incomingSnapshot = nil }
            send(Message(type: .appendResponse, to: m.from, index: log.committed))
            return
        }
        guard chunk.offset <= chunk.totalSize, UInt64(chunk.data.count) <= chunk.totalSize - chunk.offset else { return }
        if var incoming = incomingSnapshot, incoming.metadata == metadata, incoming.totalSize == chunk.totalSize {
            let held = UInt64(incoming.data.count)
            guard held == chunk.offset else {
                // A chunk we already hold: the leader may have lost our acknowledgement, so
                // repeat it. A chunk from further on: dropped, and we say what we hold (the
                // leader goes back only if it believed we held more).
                send(
                    Message(
                        type: .snapshotResponse, to: m.from, index: m.index, reject: chunk.offset > held,
                        rejectHint: held))
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
