import CLZ4

/// How a `HeapImage` changes memory that a running application maps too.
///
/// The node's and the log tool's images own their memory and write it directly. In a process
/// that runs the application (the runtime), the image's memory is the heap's always-writable
/// alias, and the application has pages of its own view dirty with writes that are not committed
/// yet. The runtime then sets itself as the image's writer, and the image makes every change
/// through it and reads every byte it reports (snapshots, digests, `GET /v1/memory`, atomics)
/// through it:
///
/// - a change of several pages is bracketed by `beginChange(pages:)` and `endChange()`, so that
///   the application sees the pages of one committed entry change together;
/// - `commit(offset:bytes:)` gives the committed value of some bytes of one page, and the writer
///   decides where they go (the alias, the twin of a dirty page, the records of releases in flight);
/// - `withCommittedPage(_:_:)` gives a page's committed contents, which, for a page the
///   application dirtied, is not what the alias holds.
///
/// Calls come from the state machine's owner (one thread at a time).
package protocol HeapImageWriter: AnyObject {
    /// Hides `pages` (ascending, distinct) from the application until `endChange()`.
    func beginChange(pages: [Int])
    /// The committed value of heap bytes [offset, offset + bytes.count), all inside one page that
    /// the current change holds.
    func commit(offset: Int, bytes: UnsafeRawBufferPointer)
    /// Ends the change begun last: the pages become visible again, with their new bytes.
    func endChange()
    /// Calls `body` with the committed contents of page `page` (valid only inside `body`).
    func withCommittedPage(_ page: Int, _ body: (UnsafeRawBufferPointer) -> Void)
}

extension HeapImage {
    /// A change of the bytes [offset, offset + bytes.count), through the writer, one page at a
    /// time, all the pages it touches held together.
    func commitThroughWriter(offset: Int, bytes: UnsafeRawBufferPointer) {
        guard let writer, !bytes.isEmpty else { return }
        let first = offset / pageSize
        let last = (offset + bytes.count - 1) / pageSize
        writer.beginChange(pages: Array(first...last))
        defer { writer.endChange() }
        var done = 0
        while done < bytes.count {
            let within = (offset + done) % pageSize
            let chunk = min(bytes.count - done, pageSize - within)
            writer.commit(
                offset: offset + done, bytes: UnsafeRawBufferPointer(rebasing: bytes[done..<done + chunk]))
            done += chunk
        }
    }

    /// `zero(offset:count:)` through the writer: only pages that may hold non-zero bytes are
    /// visited, and only those whose committed bytes in the range are not zero are changed.
    func zeroThroughWriter(offset: Int, count: Int) {
        guard let writer, count > 0 else { return }
        let end = offset + count
        var pages: [Int] = []
        touched.forEach(in: offset / pageSize..<(end - 1) / pageSize + 1) { page in
            let from = max(offset, page * pageSize)
            let to = min(end, (page + 1) * pageSize)
            let zero = withCommittedPage(page) { bytes in
                HeapImage.isZero(UnsafeRawBufferPointer(rebasing: bytes[(from - page * pageSize)..<(to - page * pageSize)]))
            }
            if !zero { pages.append(page) }
        }
        guard !pages.isEmpty else { return }
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        writer.beginChange(pages: pages)
        for page in pages {
            let from = max(offset, page * pageSize)
            let to = min(end, (page + 1) * pageSize)
            writer.commit(offset: from, bytes: UnsafeRawBufferPointer(rebasing: zeros[0..<(to - from)]))
        }
        writer.endChange()
        for page in pages where isZeroPage(page) { touched.remove(page) }
    }

    /// `restore(from:)` through the writer: every page that may hold bytes and is not in the
    /// snapshot is zeroed, and every page of the snapshot committed whole, one page at a time
    /// (a restore replaces the heap while this member catches up; it is not one release).
    func restoreThroughWriter(_ snapshot: Snapshot) {
        guard let writer else { return }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        defer { scratch.deallocate() }
        let inSnapshot = Set(snapshot.pages.map(\.page))
        var stale: [Int] = []
        touched.forEach(in: 0..<pageCount) { page in if !inSnapshot.contains(page) { stale.append(page) } }
        scratch.initializeMemory(as: UInt8.self, repeating: 0)
        for page in stale {
            writer.beginChange(pages: [page])
            writer.commit(offset: page * pageSize, bytes: UnsafeRawBufferPointer(scratch))
            writer.endChange()
            touched.remove(page)
        }
        snapshot.bytes.withUnsafeBytes { buffer in
            let source = buffer.baseAddress.unsafelyUnwrapped
            for record in snapshot.pages {
                touched.insert(record.page)
                // Checked by Snapshot(decoding:): each record decompresses to exactly one page.
                _ = LZ4_decompress_safe(
                    (source + record.offset).assumingMemoryBound(to: CChar.self),
                    scratch.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: CChar.self),
                    Int32(record.length), Int32(pageSize))
                writer.beginChange(pages: [record.page])
                writer.commit(offset: record.page * pageSize, bytes: UnsafeRawBufferPointer(scratch))
                writer.endChange()
            }
        }
    }
}
