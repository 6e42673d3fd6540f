/// Why `gallocy demo` failed, in words for the person who ran it.
package struct DemoError: Error, Sendable, CustomStringConvertible {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}
