import GallocyCodec
import GallocyStateMachine

/// `gallocy log replay --svg FILE`: the heap as a map of pages, one square per page (or per group
/// of pages for a large heap), coloured by state: free, allocated but never written, last written
/// by member N (one colour per member), leased (page-lease mode). Every square has a tooltip, and
/// a legend names the colours. Plain SVG: open it in a browser.
package enum HeapMapSVG {
    /// At most this many squares; beyond it each square stands for several consecutive pages.
    package static let maxCells = 16_384
    static let columns = 64
    static let cell = 12
    static let freeColour = "#e8e8e8"
    static let allocatedColour = "#9db7d5"
    static let leasedColour = "#ffd700"
    static let memberColours = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"]

    /// What one square shows.
    enum CellState: Hashable {
        case free
        case allocated
        case written(member: UInt64)
        case leased(holder: UInt64)
    }

    static func colour(_ state: CellState) -> String {
        switch state {
        case .free: freeColour
        case .allocated: allocatedColour
        case .written(let member): memberColours[Int(member % UInt64(memberColours.count))]
        case .leased: leasedColour
        }
    }

    /// The SVG text for the state `replay` rebuilt.
    package static func render(_ replay: LogReplay) throws(LogToolError) -> String {
        guard let settings = replay.machine.settings else {
            throw LogToolError(
                .outOfRange, "at index \(replay.index) the cluster is not bootstrapped: there is no heap to draw")
        }
        let rows = try replay.query(
            "SELECT page, state, blocks, last_writer, last_write_index, write_count, lease_holder FROM pages "
                + "WHERE company = \(replay.machine.company) ORDER BY page")
        let pageCount = Int(settings.pageCount)
        let pagesPerCell = max(1, (pageCount + maxCells - 1) / maxCells)
        let cellCount = (pageCount + pagesPerCell - 1) / pagesPerCell
        // Per square: its state and the latest write index that decided it.
        var states = [CellState](repeating: .free, count: cellCount)
        var latest = [Int64](repeating: -1, count: cellCount)
        var details = [String](repeating: "", count: cellCount)
        var writers = Set<UInt64>()
        var anyLeased = false
        for row in rows.rows {
            guard row.count == 7, let page = row[0].int64, page >= 0, Int(page) < pageCount else { continue }
            let index = Int(page) / pagesPerCell
            let writer = row[3].int64
            let writeIndex = row[4].int64 ?? -1
            var state: CellState = row[1].text == "allocated" ? .allocated : .free
            if let writer { state = .written(member: UInt64(bitPattern: writer)) }
            if let holder = row[6].int64 {
                state = .leased(holder: UInt64(bitPattern: holder))
                anyLeased = true
            }
            if case .written(let member) = state { writers.insert(member) }
            let rank = { (s: CellState) -> Int in
                switch s {
                case .free: 0
                case .allocated: 1
                case .written: 2
                case .leased: 3
                }
            }
            if rank(state) > rank(states[index]) || (rank(state) == rank(states[index]) && writeIndex > latest[index]) {
                states[index] = state
                latest[index] = writeIndex
            }
            if pagesPerCell == 1 {
                var text = "\(row[1].text ?? "?"), \(row[2].int64 ?? 0) block(s)"
                if let writer {
                    text += ", last written by member \(writer) at index \(writeIndex) (\(row[5].int64 ?? 0) writes)"
                }
                if let holder = row[6].int64 { text += ", leased to member \(holder)" }
                details[index] = text
            }
        }
        let hex = HexAddress.format
        let width = columns * cell + 20
        let gridTop = 70
        let gridRows = (cellCount + columns - 1) / columns
        var legend: [(String, String)] = [(freeColour, "free"), (allocatedColour, "allocated, not written")]
        for member in writers.sorted() {
            legend.append((colour(.written(member: member)), "last written by member \(member)"))
        }
        legend.append((leasedColour, anyLeased ? "leased" : "leased (none)"))
        let legendTop = gridTop + gridRows * cell + 16
        let height = legendTop + legend.count * 18 + 10
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" font-family="monospace" font-size="12">
            <title>Gallocy heap at index \(replay.index)</title>
            <text x="10" y="20" font-size="14">Heap at index \(replay.index): \(hex(settings.heapBase)), \(settings.heapSize) bytes, \(pageCount) pages of \(settings.pageSize)</text>
            <text x="10" y="40">One square = \(pagesPerCell) page(s) = \(pagesPerCell * Int(settings.pageSize)) bytes; \(columns) squares per row. Hover a square for details.</text>

            """
        for index in 0..<cellCount {
            let x = 10 + (index % columns) * cell
            let y = gridTop + (index / columns) * cell
            let firstPage = index * pagesPerCell
            let address = settings.heapBase &+ UInt64(firstPage) &* UInt64(settings.pageSize)
            var title =
                pagesPerCell == 1
                ? "page \(firstPage) at \(hex(address))"
                : "pages \(firstPage)...\(min(pageCount, firstPage + pagesPerCell) - 1) from \(hex(address))"
            title += ": " + (details[index].isEmpty ? describe(states[index]) : details[index])
            let stroke = states[index] == .free ? "#ffffff" : "#555555"
            svg +=
                "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(cell - 1)\" height=\"\(cell - 1)\" fill=\"\(colour(states[index]))\" stroke=\"\(stroke)\" stroke-width=\"0.5\"><title>\(escape(title))</title></rect>\n"
        }
        for (k, item) in legend.enumerated() {
            let y = legendTop + k * 18
            svg +=
                "<rect x=\"10\" y=\"\(y)\" width=\"12\" height=\"12\" fill=\"\(item.0)\" stroke=\"#555555\" stroke-width=\"0.5\"/>"
            svg += "<text x=\"28\" y=\"\(y + 10)\">\(escape(item.1))</text>\n"
        }
        svg += "</svg>\n"
        return svg
    }

    static func describe(_ state: CellState) -> String {
        switch state {
        case .free: "free"
        case .allocated: "allocated, not written"
        case .written(let member): "last written by member \(member)"
        case .leased(let holder): "leased to member \(holder)"
        }
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }
}
