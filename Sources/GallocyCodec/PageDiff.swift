/// The changed bytes of one page against its twin (the copy taken before the first write),
/// LZ4-compressed. Applying it to any copy of the page overwrites exactly the bytes the writer
/// changed, so concurrent writers of different bytes of one page do not undo each other.
///
/// The encoding of `compressed` is described in docs/storage.md.
public struct PageDiff: Sendable, Hashable {
    /// The LZ4-compressed run list.
    public var compressed: [UInt8]
    /// Size of the run list before compression.
    public var rawLength: UInt32

    public init(compressed: [UInt8], rawLength: UInt32) {
        self.compressed = compressed
        self.rawLength = rawLength
    }
}
