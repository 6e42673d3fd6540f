import GallocyCodec

// The encoding of an ApplyResult kept in the `sessions` table so that a retried request gets the
// same answer. It is part of the snapshot, so tags never change meaning: add, never renumber.
extension ApplyResult {
    private enum Tag: UInt8 {
        case bootstrapped = 1, noop, allocated, freed, written, atomicAccepted, lockGranted, lockBusy
        case lockReleased, lockExpired, barrier, rootSet, rejected
        case atomic
        case lease
    }

    /// The bytes stored for this result.
    package var encoded: [UInt8] {
        var writer = ByteWriter(capacity: 24)
        switch self {
        case .bootstrapped: writer.write(Tag.bootstrapped.rawValue)
        case .noop: writer.write(Tag.noop.rawValue)
        case .allocated(let address):
            writer.write(Tag.allocated.rawValue)
            writer.writeVarint(address)
        case .freed(let address, let extent, let zeroedPages):
            writer.write(Tag.freed.rawValue)
            writer.writeVarint(address)
            writer.writeVarint(extent)
            writer.writeVarint(zeroedPages.lowerBound)
            writer.writeVarint(zeroedPages.upperBound)
        case .written(let pages, let releasedLock):
            writer.write(Tag.written.rawValue)
            writer.writeVarint(UInt64(pages))
            writer.write(releasedLock)
        case .atomicAccepted(let address):
            writer.write(Tag.atomicAccepted.rawValue)
            writer.writeVarint(address)
        case .atomic(let ok, let old):
            writer.write(Tag.atomic.rawValue)
            writer.write(ok)
            writer.writeVarint(old)
        case .lockGranted(let epoch, let expiresAt):
            writer.write(Tag.lockGranted.rawValue)
            writer.writeVarint(epoch)
            writer.writeVarint(expiresAt)
        case .lockBusy(let holder, let epoch, let expiresAt):
            writer.write(Tag.lockBusy.rawValue)
            writer.writeVarint(holder)
            writer.writeVarint(epoch)
            writer.writeVarint(expiresAt)
        case .lockReleased: writer.write(Tag.lockReleased.rawValue)
        case .lockExpired: writer.write(Tag.lockExpired.rawValue)
        case .barrier(let opened, let generation):
            writer.write(Tag.barrier.rawValue)
            writer.write(opened)
            writer.writeVarint(generation)
        case .rootSet: writer.write(Tag.rootSet.rawValue)
        case .lease(let page, let holder, let grant, let expiresAt):
            writer.write(Tag.lease.rawValue)
            writer.writeVarint(page)
            writer.write(holder != nil)
            if let holder { writer.writeVarint(holder) }
            writer.writeVarint(grant)
            writer.writeVarint(expiresAt)
        case .rejected(let rejection):
            writer.write(Tag.rejected.rawValue)
            writer.write(rejection.code.rawValue)
            writer.writeString(rejection.message)
        }
        return writer.bytes
    }

    /// Decodes bytes from `encoded`; they come from a snapshot, so nothing is trusted.
    package init(encoded bytes: [UInt8]) throws(StateMachineError) {
        do {
            self = try bytes.withUnsafeBytes { buffer throws(CodecError) -> ApplyResult in
                var reader = ByteReader(buffer)
                let result = try Self.decode(&reader)
                try reader.expectEnd("stored apply result")
                return result
            }
        } catch {
            throw StateMachineError(.corruptTable, "a stored session result does not decode: \(error)")
        }
    }

    private static func decode(_ reader: inout ByteReader) throws(CodecError) -> ApplyResult {
        let raw = try reader.readUInt8("result tag")
        guard let tag = Tag(rawValue: raw) else { throw CodecError(.unknownTag, "apply result tag \(raw)") }
        switch tag {
        case .bootstrapped: return .bootstrapped
        case .noop: return .noop
        case .allocated: return .allocated(address: try reader.readVarint("address"))
        case .freed:
            let address = try reader.readVarint("address")
            let extent = try reader.readVarint("extent")
            let lower = try reader.readVarint("first zeroed page")
            let upper = try reader.readVarint("end of zeroed pages")
            guard lower <= upper else { throw CodecError(.invalidValue, "zeroed pages \(lower)..<\(upper)") }
            return .freed(address: address, extent: extent, zeroedPages: lower..<upper)
        case .written:
            let pages = try reader.readVarint("page count")
            guard pages <= UInt64(Int.max) else { throw CodecError(.lengthOutOfRange, "page count \(pages)") }
            return .written(pages: Int(pages), releasedLock: try reader.readBool("released lock"))
        case .atomicAccepted: return .atomicAccepted(address: try reader.readVarint("address"))
        case .atomic:
            return .atomic(ok: try reader.readBool("atomic ok"), old: try reader.readVarint("atomic old value"))
        case .lockGranted:
            return .lockGranted(epoch: try reader.readVarint("epoch"), expiresAt: try reader.readVarint("expiry"))
        case .lockBusy:
            return .lockBusy(
                holder: try reader.readVarint("holder"), epoch: try reader.readVarint("epoch"),
                expiresAt: try reader.readVarint("expiry"))
        case .lockReleased: return .lockReleased
        case .lockExpired: return .lockExpired
        case .barrier:
            return .barrier(opened: try reader.readBool("opened"), generation: try reader.readVarint("generation"))
        case .rootSet: return .rootSet
        case .lease:
            let page = try reader.readVarint("page")
            let holder = try reader.readBool("held") ? try reader.readVarint("holder") : nil
            let grant = try reader.readVarint("grant")
            return .lease(page: page, holder: holder, grant: grant, expiresAt: try reader.readVarint("expiry"))
        case .rejected:
            let rawCode = try reader.readUInt8("rejection code")
            guard let code = Rejection.Code(rawValue: rawCode) else {
                throw CodecError(.unknownTag, "rejection code \(rawCode)")
            }
            return .rejected(Rejection(code, try reader.readString("rejection message", limit: 1 << 16)))
        }
    }
}
