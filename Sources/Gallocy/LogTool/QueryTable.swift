import GallocyStateMachine

/// Renders a query result for people (aligned columns) and for programs (one JSON object per row).
package enum QueryTable {
    /// Aligned columns under a header line, numbers right-aligned; columns that hold heap addresses
    /// (`address`, `heap_base`, `*_address`) are shown in hex, as the HTTP API writes them.
    package static func lines(_ result: QueryResult) -> [String] {
        let hexColumns = Set(
            result.columns.indices.filter {
                let name = result.columns[$0].lowercased()
                return name == "address" || name == "heap_base" || name.hasSuffix("_address")
            })
        let cells: [[String]] = result.rows.map { row in
            row.enumerated().map { column, value in text(value, hex: hexColumns.contains(column)) }
        }
        var widths = result.columns.map(\.count)
        for row in cells {
            for (column, cell) in row.enumerated() where column < widths.count {
                widths[column] = max(widths[column], cell.count)
            }
        }
        let numeric: [Bool] = result.columns.indices.map { column in
            result.rows.allSatisfy { row in
                guard column < row.count else { return true }
                switch row[column] {
                case .integer, .real, .null: return !hexColumns.contains(column)
                default: return false
                }
            }
        }
        func render(_ row: [String]) -> String {
            row.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: max(0, widths[column] - cell.count))
                return numeric[column] ? pad + cell : cell + pad
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }
        var out = [render(result.columns), render(widths.map { String(repeating: "-", count: $0) })]
        out += cells.map(render)
        out.append(
            "(\(result.rows.count) row\(result.rows.count == 1 ? "" : "s")\(result.truncated ? ", truncated" : ""))")
        return out
    }

    /// One JSON object per row, keyed by column name (`--json`); `extra` is merged into each.
    package static func jsonRows(_ result: QueryResult, extra: [String: JSONValue] = [:]) -> [JSONValue] {
        result.rows.map { row in
            var object = extra
            for (column, value) in zip(result.columns, row) { object[column] = json(value) }
            return .object(object)
        }
    }

    package static func json(_ value: SQLiteValue) -> JSONValue {
        switch value {
        case .null: .null
        case .integer(let v): .int(v)
        case .real(let v): .double(v)
        case .text(let v): .string(v)
        case .blob(let bytes): .string(bytes.map { byte in String(byte, radix: 16).leftPadded(2) }.joined())
        }
    }

    static func text(_ value: SQLiteValue, hex: Bool) -> String {
        switch value {
        case .null: return "-"
        case .integer(let v): return hex && v >= 0 ? HexAddress.format(UInt64(v)) : String(v)
        case .real(let v): return String(v)
        case .text(let v): return v
        case .blob(let bytes): return "x'" + bytes.map { String($0, radix: 16).leftPadded(2) }.joined() + "'"
        }
    }
}

extension String {
    func leftPadded(_ length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }

    func trimmingTrailingSpaces() -> String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}
