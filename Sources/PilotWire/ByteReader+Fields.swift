/// Fields that several formats read the same way.
extension ByteReader {
    /// Reads everything that is left as UTF-8 text (possibly empty), for formats whose last
    /// field is text without a length; throws `invalidValue` naming `field` for other bytes.
    mutating func readText(_ field: String) throws(WireError) -> String {
        guard let text = String(validating: readRemaining(), as: UTF8.self) else {
            throw .invalidValue(field: field, reason: "not UTF-8")
        }
        return text
    }

    /// Reads a type byte and the kind it names; throws `unknownType` naming `field` for a byte
    /// that names none.
    mutating func readKind<Kind: RawRepresentable<UInt8>>(_ field: String) throws(WireError) -> Kind {
        let code = try readUInt8(field)
        guard let kind = Kind(rawValue: code) else { throw .unknownType(field: field, value: UInt32(code)) }
        return kind
    }
}
