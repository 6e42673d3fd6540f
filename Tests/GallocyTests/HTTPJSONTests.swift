import Gallocy
import Testing

/// The strict JSON parser and serializer the API uses instead of `JSONSerialization`, and the
/// hex spelling of addresses.
struct HTTPJSONTests {
    @Test func integersKeepAll64Bits() throws {
        #expect(try JSONParser.parse("18446744073709551615") == .uint(UInt64.max))
        #expect(try JSONParser.parse("9007199254740993") == .uint(9_007_199_254_740_993))  // 2^53 + 1
        #expect(try JSONParser.parse("-9223372036854775808") == .int(Int64.min))
        #expect(try JSONParser.parse("-1") == .int(-1))
        #expect(try JSONParser.parse("-0") == .uint(0))
        #expect(JSONValue.uint(UInt64.max).jsonText == "18446744073709551615")
        #expect(JSONValue.int(Int64.min).jsonText == "-9223372036854775808")
    }

    @Test func integersBeyond64BitsAndFractionsAreNotIntegers() throws {
        let tooBig = try JSONParser.parse("18446744073709551616")
        #expect(tooBig.uint64Value == nil)
        #expect(try JSONParser.parse("1.0").uint64Value == nil)
        #expect(try JSONParser.parse("1e2").uint64Value == nil)
        #expect(try JSONParser.parse("-9223372036854775809").int64Value == nil)
        #expect(try JSONParser.parse("2.5") == .double(2.5))
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "[1 2]", "{\"a\" 1}", "{\"a\":1,}", "{a:1}", "01", "1.", ".5", "-", "1e", "+1",
        "tru", "nulll", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"a\u{1}b\"", "1e999",
        "{\"a\":1,\"a\":2}", "[] []", "NaN",
    ])
    func malformedTextIsRefusedAsBadRequest(text: String) {
        #expect(throws: APIError.self) { try JSONParser.parse(text) }
        do {
            _ = try JSONParser.parse(text)
        } catch {
            #expect(error.status == 400)
            #expect(error.code == "bad_request")
        }
    }

    @Test func invalidUTF8InAStringIsRefused() {
        #expect(throws: APIError.self) { try JSONParser.parse([0x22, 0xFF, 0xFE, 0x22]) }
    }

    @Test func nestingIsBounded() throws {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: APIError.self) { try JSONParser.parse(deep) }
        let fine = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        _ = try JSONParser.parse(fine)
    }

    @Test func stringsRoundTripEscapesAndUnicode() throws {
        let parsed = try JSONParser.parse(#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00 名前""#)
        #expect(parsed == .string("a\"b\\c/d\n\té😀 名前"))
        let control = JSONValue.string("x\u{1}y\"z\n")
        #expect(control.jsonText == #""x\u0001y\"z\n""#)
        #expect(try JSONParser.parse(control.jsonText) == control)
    }

    @Test func valuesRoundTripThroughText() throws {
        let value = JSONValue.object([
            "a": .array([.null, .bool(true), .bool(false), .uint(0), .int(-5), .double(0.25)]),
            "b": .object(["nested": .string("")]),
            "max": .uint(UInt64.max),
        ])
        #expect(value.jsonText == #"{"a":[null,true,false,0,-5,0.25],"b":{"nested":""},"max":18446744073709551615}"#)
        #expect(try JSONParser.parse(value.jsonText) == value)
        #expect(
            try JSONParser.parse(" \n\t{ \"k\" : [ 1 , 2 ] }\r\n ") == .object(["k": .array([.uint(1), .uint(2)])]))
    }

    @Test func hexAddressesParseStrictlyAndFormatInLowercase() {
        #expect(HexAddress.parse("0x0") == 0)
        #expect(HexAddress.parse("0x7F0000001000") == 0x7f00_0000_1000)
        #expect(HexAddress.parse("0Xffffffffffffffff") == UInt64.max)
        #expect(HexAddress.parse("0x0000000000000000") == 0)
        for bad in ["", "0x", "1000", "x10", "0x10000000000000000", "0x-1", " 0x1", "0x1 ", "0xg", "0x+1", "00x1"] {
            #expect(HexAddress.parse(bad) == nil, "\(bad)")
        }
        #expect(HexAddress.format(0x7f00_0000_1000) == "0x7f0000001000")
        #expect(HexAddress.format(0) == "0x0")
        #expect(HexAddress.format(UInt64.max) == "0xffffffffffffffff")
    }
}
