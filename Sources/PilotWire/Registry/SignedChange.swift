/// pilot-rendezvous's extension to 1.18's registry wire: `set_hostname`, `set_tags` and
/// `set_visibility` signed over the values they set and a nonce; `set_listing` (ours alone)
/// only in this form.
///
/// 1.18 signs only `<type>:<node>`, so a captured signature fits any values and can be replayed
/// (README, "pilot-rendezvous"). In this form the request carries `nonce` (an integer above any
/// the node used before) and the signature covers `text(...)`. A registry that takes the form
/// says `"signed_values": 1` in `register_ok`; once a key used it, that registry refuses the 1.18
/// form for the key.
public enum SignedChange {
    /// The types the form covers.
    public static let types: Set<String> = ["set_hostname", "set_tags", "set_visibility", "set_listing"]

    /// `<type>:<node>:<nonce>:<values>`; the values come last, so nothing in them can shift a
    /// field before them.
    public static func text(type: String, node: UInt32, nonce: Int64, values: String) -> String {
        "\(type):\(node):\(nonce):\(values)"
    }

    /// What of `fields` the signature covers: the hostname as sent, the tags as sent joined by
    /// commas (a valid tag has none), or `public`/`private`. Nil when the field is missing or
    /// of the wrong kind.
    public static func values(type: String, _ fields: (String) -> JSON?) -> String? {
        switch type {
        case "set_hostname": return fields("hostname")?.stringValue
        case "set_tags":
            guard let tags = fields("tags")?.arrayValue else { return nil }
            let texts = tags.compactMap(\.stringValue)
            return texts.count == tags.count ? texts.joined(separator: ",") : nil
        case "set_visibility": return fields("public")?.boolValue.map { $0 ? "public" : "private" }
        case "set_listing":
            // `<listing>:<category>:<description>`: the first two are labels (no colon), the
            // free text comes last.
            guard let listing = fields("listing")?.stringValue, let category = fields("category")?.stringValue,
                let description = fields("description")?.stringValue
            else { return nil }
            return "\(listing):\(category):\(description)"
        default: return nil
        }
    }
}
