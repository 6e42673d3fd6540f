extension HeapImage {
    /// The pages that may hold a byte that is not zero: every page the image has written since it
    /// last found the page zero. Scans (digest, snapshot, export, zeroing) visit only these, so
    /// their cost follows the memory in use rather than the heap size, and they never read
    /// memory nobody wrote. That matters for a memfd mapping: reading a hole of a shared memory
    /// file allocates a page, so a scan of a whole 256 MiB memfd heap would make it cost 256 MiB.
    ///
    /// The set may hold pages that are zero (a page written with zeros), never the other way
    /// round, as long as every write goes through the image (or is reported with
    /// `noteWritten(address:length:)`).
    struct TouchedPages {
        private var words: [UInt64]
        let count: Int

        /// A set of `count` pages, all in it or none.
        init(count: Int, full: Bool) {
            self.count = count
            words = [UInt64](repeating: 0, count: (count + 63) / 64)
            if full { insert(0..<count) }
        }

        func contains(_ page: Int) -> Bool { words[page >> 6] & (1 << UInt64(page & 63)) != 0 }

        mutating func insert(_ page: Int) { words[page >> 6] |= 1 << UInt64(page & 63) }

        mutating func remove(_ page: Int) { words[page >> 6] &= ~(1 << UInt64(page & 63)) }

        mutating func insert(_ pages: Range<Int>) {
            for page in pages { insert(page) }
        }

        /// Calls `body` with each page of the set inside `range`, in ascending order; whole words
        /// without a page are skipped 64 pages at a time.
        func forEach<E: Error>(in range: Range<Int>, _ body: (Int) throws(E) -> Void) throws(E) {
            guard !range.isEmpty else { return }
            var wordIndex = range.lowerBound >> 6
            let lastWord = (range.upperBound - 1) >> 6
            while wordIndex <= lastWord {
                var word = words[wordIndex]
                while word != 0 {
                    let page = wordIndex << 6 + word.trailingZeroBitCount
                    word &= word - 1
                    if page >= range.upperBound { return }
                    if page >= range.lowerBound { try body(page) }
                }
                wordIndex += 1
            }
        }

        /// How many pages the set holds.
        var population: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }
    }
}
