import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// The part of `gallocy log verify` above storage: the checksums and structure *inside* the
/// records, which `StorageVerifier` treats as opaque bytes. Every normal entry's data must decode
/// as a command (`CommandCodec`, with its own CRC-32C), every membership change as a `ConfChange`,
/// and the snapshot in force must restore as a state machine (its own envelope, page table and
/// heap checksums) holding the state as of the index its manifest names.
///
/// Run after the storage verifier found the directory intact, so that LMDB's own pages are known
/// to be readable.
package struct LogContentCheck {
    /// The first problem found, naming the entry or record.
    package var problem: String?
    package var entriesChecked = 0
    package var bytesChecked = 0
    package var snapshotChecked = false

    package init(_ directory: LogDirectory, progress: ((Int, Int) -> Void)? = nil) throws(LogToolError) {
        let storage = directory.storage
        if let manifest = storage.snapshot {
            do {
                if let (_, data) = try storage.readSnapshot(), !data.isEmpty {
                    let machine = try StateMachine(snapshot: data)
                    if machine.appliedIndex != manifest.metadata.index {
                        problem =
                            "snapshot \(manifest.id): it holds the state as of index \(machine.appliedIndex), its manifest says \(manifest.metadata.index)"
                    }
                    snapshotChecked = true
                }
            } catch let error as StorageError {
                problem = "snapshot \(manifest.id): \(error.message)"
            } catch let error as StateMachineError {
                problem =
                    "snapshot \(manifest.id) (index \(manifest.metadata.index)): it does not restore: \(error.message)"
            } catch {
                problem = "snapshot \(manifest.id): \(error)"
            }
        }
        if problem != nil { return }
        let first = storage.firstIndex
        let last = storage.lastIndex
        guard first <= last else { return }
        let total = Int(last - first + 1)
        var found: String?
        var checked = 0
        var bytes = 0
        do {
            try directory.forEachEntry(from: first, through: last) { (entry, size) throws(LogToolError) in
                guard found == nil else { return }
                switch entry.kind {
                case .confChange:
                    if MembershipRecord.decode(entry.data) == nil {
                        found =
                            "log entry \(entry.index): its membership change does not decode (\(entry.data.count) bytes)"
                    }
                case .normal where entry.data.isEmpty:
                    break
                case .normal:
                    do {
                        _ = try CommandCodec.decode(entry.data)
                    } catch {
                        found = "log entry \(entry.index): its command does not decode: \(error)"
                    }
                }
                checked += 1
                bytes += size
                if let progress, checked & 4095 == 0 { progress(checked, total) }
            }
        } catch {
            found = error.message
        }
        progress?(checked, total)
        problem = found
        entriesChecked = checked
        bytesChecked = bytes
    }
}
