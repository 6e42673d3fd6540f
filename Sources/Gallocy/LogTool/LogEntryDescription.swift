import GallocyCodec
import GallocyRaft
import GallocyStateMachine

/// One log entry decoded for `gallocy log dump`: its type word and the fields that make sense
/// for that type, both as JSON and as a one-line summary for the readable table.
package struct LogEntryDescription: Sendable, Hashable {
    package var index: UInt64
    package var term: UInt64
    /// The lowercase type word: a command's `kindName` (`bootstrap`, `noop`, `alloc`, `free`,
    /// `write`, `atomic`, `lock_acquire`, `lock_release`, `lock_expire`, `barrier`, `set_root`),
    /// or `conf_change`, `empty` (a new leader's empty entry), `undecodable` (data that is not a
    /// command this build reads; every member rejects it alike).
    package var type: String
    /// The stored (encoded) size of the entry.
    package var bytes: Int
    /// The decoded fields, beyond index, term, type and bytes.
    package var fields: [String: JSONValue]
    /// A short human summary of `fields`.
    package var summary: String

    /// Decodes `entry`. `pageSize` (from the cluster settings) lets a write report the bytes each
    /// page diff touches and the pages' addresses; `heapBase` the addresses.
    package init(_ entry: Entry, storedSize: Int, settings: ClusterSettings?) {
        index = entry.index
        term = entry.term
        bytes = storedSize
        fields = [:]
        summary = ""
        switch entry.kind {
        case .confChange:
            type = "conf_change"
            if let (change, context) = MembershipRecord.decode(entry.data) {
                let word: String
                switch change.kind {
                case .addVoter: word = "add_voter"
                case .addLearner: word = "add_learner"
                case .remove: word = "remove"
                }
                fields = ["change": .string(word), "node": .uint(change.node)]
                summary = "\(word) \(change.node)"
                if !context.isEmpty {
                    let address = String(decoding: context, as: UTF8.self)
                    fields["address"] = .string(address)
                    summary += " at \(address)"
                }
            } else {
                fields = ["error": .string("the membership change does not decode (\(entry.data.count) bytes)")]
                summary = "undecodable membership change"
            }
        case .normal where entry.data.isEmpty:
            type = "empty"
            summary = "empty entry of a new leader"
        case .normal:
            do {
                let command = try CommandCodec.decode(entry.data)
                type = command.kindName
                describe(command, settings: settings)
            } catch {
                type = "undecodable"
                fields = ["error": .string(error.description)]
                summary = "undecodable: \(error.description)"
            }
        }
    }

    private mutating func describe(_ command: Command, settings: ClusterSettings?) {
        if command.company != 0 { fields["company"] = .uint(UInt64(command.company)) }
        if command.client.session != 0 {
            fields["session"] = .uint(command.client.session)
            fields["sequence"] = .uint(command.client.sequence)
        }
        let hex = HexAddress.format
        switch command.body {
        case .bootstrap(let s):
            fields["cluster_id"] = .uint(s.clusterID)
            fields["heap_base"] = .string(hex(s.heapBase))
            fields["heap_size"] = .uint(s.heapSize)
            fields["page_size"] = .uint(UInt64(s.pageSize))
            summary = "cluster \(s.clusterID), heap \(hex(s.heapBase)) + \(s.heapSize) bytes, pages of \(s.pageSize)"
        case .noop:
            summary = "no-op"
        case .alloc(let size, let member):
            fields["size"] = .uint(size)
            fields["member"] = .uint(member)
            summary = "\(size) bytes for member \(member)"
        case .free(let address):
            fields["address"] = .string(hex(address))
            summary = "block at \(hex(address))"
        case .write(let member, let pages, let releaseLock, let releaseEpoch):
            fields["member"] = .uint(member)
            let pageSize = Int(settings?.pageSize ?? UInt32(PageDiff.maxPageSize))
            var compressedTotal = 0
            var rawTotal = 0
            var touchedTotal = 0
            var list: [JSONValue] = []
            for write in pages {
                var page: [String: JSONValue] = [
                    "page": .uint(write.page),
                    "compressed": .uint(UInt64(write.diff.compressed.count)),
                    "raw": .uint(UInt64(write.diff.rawLength)),
                ]
                if let settings {
                    page["address"] = .string(hex(settings.heapBase &+ write.page &* UInt64(settings.pageSize)))
                }
                // The bytes the diff sets: a diff that does not decompress is shown, not fatal.
                if let touched = try? write.diff.touchedBytes(pageSize: pageSize) {
                    page["touched"] = .uint(UInt64(touched))
                    touchedTotal += touched
                } else {
                    page["touched"] = .null
                }
                compressedTotal += write.diff.compressed.count
                rawTotal += Int(write.diff.rawLength)
                list.append(.object(page))
            }
            fields["pages"] = .array(list)
            fields["compressed_bytes"] = .uint(UInt64(compressedTotal))
            fields["raw_bytes"] = .uint(UInt64(rawTotal))
            fields["touched_bytes"] = .uint(UInt64(touchedTotal))
            var text = "member \(member), \(pages.count) page(s) "
            text += "[" + pages.prefix(8).map { String($0.page) }.joined(separator: ",")
            text += pages.count > 8 ? ",...]" : "]"
            text += ", \(touchedTotal) bytes set, diff \(rawTotal) raw -> \(compressedTotal) compressed"
            if let releaseLock {
                fields["release_lock"] = .string(releaseLock)
                fields["release_epoch"] = .uint(releaseEpoch)
                text += ", releases lock '\(releaseLock)' epoch \(releaseEpoch)"
            }
            summary = text
        case .atomic(let address, let op):
            fields["address"] = .string(hex(address))
            switch op {
            case .compareAndSwap(let expect, let value):
                fields["op"] = .string("cas")
                fields["expect"] = .uint(expect)
                fields["value"] = .uint(value)
                summary = "cas \(hex(address)) expect \(expect) -> \(value)"
            case .add(let delta):
                fields["op"] = .string("add")
                fields["delta"] = .uint(delta)
                summary = "add \(hex(address)) += \(delta)"
            case .swap(let value):
                fields["op"] = .string("swap")
                fields["value"] = .uint(value)
                summary = "swap \(hex(address)) <- \(value)"
            }
        case .lockAcquire(let name, let member, let ttl, let now):
            fields["name"] = .string(name)
            fields["member"] = .uint(member)
            fields["ttl_ms"] = .uint(ttl)
            fields["now"] = .uint(now)
            summary = "'\(name)' by member \(member), ttl \(ttl) ms at \(now)"
        case .lockRelease(let name, let epoch):
            fields["name"] = .string(name)
            fields["epoch"] = .uint(epoch)
            summary = "'\(name)' epoch \(epoch)"
        case .lockExpire(let name, let epoch):
            fields["name"] = .string(name)
            fields["epoch"] = .uint(epoch)
            summary = "'\(name)' epoch \(epoch) (lease ran out)"
        case .barrierArrive(let name, let participants, let member):
            fields["name"] = .string(name)
            fields["participants"] = .uint(UInt64(participants))
            fields["member"] = .uint(member)
            summary = "'\(name)' member \(member) of \(participants)"
        case .barrierArriveAt(let name, let participants, let member, let generation):
            fields["name"] = .string(name)
            fields["participants"] = .uint(UInt64(participants))
            fields["member"] = .uint(member)
            fields["generation"] = .uint(generation)
            summary = "'\(name)' member \(member) of \(participants) in generation \(generation)"
        case .setRoot(let name, let address):
            fields["name"] = .string(name)
            fields["address"] = .string(hex(address))
            summary = address == 0 ? "remove root '\(name)'" : "root '\(name)' -> \(hex(address))"
        case .allocIn(let size, let member, let mode):
            fields["size"] = .uint(size)
            fields["member"] = .uint(member)
            fields["mode"] = .string(mode == .sequential ? "sequential" : "release")
            summary = "\(size) bytes for member \(member), \(mode == .sequential ? "sequential" : "release") memory"
        case .leaseRequest(let page, let member, let write, let ttl, let now):
            fields["page"] = .uint(page)
            fields["member"] = .uint(member)
            fields["access"] = .string(write ? "write" : "read")
            fields["ttl_ms"] = .uint(ttl)
            fields["now"] = .uint(now)
            summary = "page \(page) for \(write ? "writing" : "reading") by member \(member), ttl \(ttl) ms at \(now)"
        case .leaseRelease(let page, let member, let grant, let diff, let now):
            fields["page"] = .uint(page)
            fields["member"] = .uint(member)
            fields["grant"] = .uint(grant)
            fields["now"] = .uint(now)
            fields["compressed"] = .uint(UInt64(diff.compressed.count))
            fields["raw"] = .uint(UInt64(diff.rawLength))
            let pageSize = Int(settings?.pageSize ?? UInt32(PageDiff.maxPageSize))
            let touched = try? diff.touchedBytes(pageSize: pageSize)
            fields["touched"] = touched.map { .uint(UInt64($0)) } ?? .null
            summary = "page \(page) by member \(member), grant \(grant), \(touched.map(String.init) ?? "?") bytes set"
        case .leaseExpire(let page, let grant, let now):
            fields["page"] = .uint(page)
            fields["grant"] = .uint(grant)
            fields["now"] = .uint(now)
            summary = "page \(page) grant \(grant) (lease ran out at \(now))"
        }
    }

    /// Adds what applying the entry did (`dump --results`).
    package mutating func addResult(_ result: ApplyResult) {
        let (json, text) = Self.describe(result)
        fields["result"] = json
        summary += summary.isEmpty ? text : " => \(text)"
    }

    /// The one JSON object of `dump --json`.
    package var json: JSONValue {
        var object = fields
        object["index"] = .uint(index)
        object["term"] = .uint(term)
        object["type"] = .string(type)
        object["bytes"] = .uint(UInt64(bytes))
        return .object(object)
    }

    /// An apply result as JSON and as words.
    package static func describe(_ result: ApplyResult) -> (JSONValue, String) {
        let hex = HexAddress.format
        switch result {
        case .bootstrapped: return (.object(["outcome": .string("bootstrapped")]), "bootstrapped")
        case .noop: return (.object(["outcome": .string("noop")]), "no-op")
        case .allocated(let address):
            return (
                .object(["outcome": .string("allocated"), "address": .string(hex(address))]),
                "allocated at \(hex(address))"
            )
        case .freed(let address, let extent, _):
            return (
                .object(["outcome": .string("freed"), "address": .string(hex(address)), "extent": .uint(extent)]),
                "freed \(extent) bytes"
            )
        case .written(let pages, let released):
            return (
                .object([
                    "outcome": .string("written"), "pages": .uint(UInt64(pages)), "released_lock": .bool(released),
                ]),
                "written"
            )
        case .atomicAccepted(let address):
            return (.object(["outcome": .string("atomic_accepted"), "address": .string(hex(address))]), "accepted")
        case .atomic(let ok, let old):
            return (
                .object(["outcome": .string("atomic"), "ok": .bool(ok), "old": .uint(old)]),
                "\(ok ? "ok" : "failed"), old \(old)"
            )
        case .lockGranted(let epoch, let expiresAt):
            return (
                .object(["outcome": .string("lock_granted"), "epoch": .uint(epoch), "expires_at": .uint(expiresAt)]),
                "granted epoch \(epoch) until \(expiresAt)"
            )
        case .lockBusy(let holder, let epoch, let expiresAt):
            return (
                .object([
                    "outcome": .string("lock_busy"), "holder": .uint(holder), "epoch": .uint(epoch),
                    "expires_at": .uint(expiresAt),
                ]),
                "busy: held by \(holder) epoch \(epoch)"
            )
        case .lockReleased: return (.object(["outcome": .string("lock_released")]), "released")
        case .lockExpired: return (.object(["outcome": .string("lock_expired")]), "expired")
        case .barrier(let opened, let generation):
            return (
                .object(["outcome": .string("barrier"), "opened": .bool(opened), "generation": .uint(generation)]),
                opened ? "opened generation \(generation)" : "waiting in generation \(generation)"
            )
        case .rootSet: return (.object(["outcome": .string("root_set")]), "root set")
        case .lease(let page, let holder, let grant, let expiresAt):
            var object: [String: JSONValue] = ["outcome": .string("lease"), "page": .uint(page), "grant": .uint(grant)]
            object["holder"] = holder.map { .uint($0) } ?? .null
            if holder != nil { object["expires_at"] = .uint(expiresAt) }
            return (
                .object(object),
                holder.map { "held by \($0) (grant \(grant)) until \(expiresAt)" } ?? "readable by all"
            )
        case .rejected(let rejection):
            return (
                .object([
                    "outcome": .string("rejected"), "code": .string("\(rejection.code)"),
                    "message": .string(rejection.message),
                ]),
                "REJECTED \(rejection.code): \(rejection.message)"
            )
        }
    }
}
