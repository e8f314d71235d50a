//! One macro for every entity id: a UUID newtype that cannot be mixed up
//! with another entity's id.

/// Declares an entity id: a `Copy` newtype over [`uuid::Uuid`] with
/// `generate` (UUIDv7, so ids sort by creation), `from_uuid`, `as_uuid`,
/// `Display`, and serde as its UUID (so a path segment or JSON member
/// parses straight into the entity's id). Extra attributes (docs) pass
/// through.
///
/// ```
/// carapace_tenancy::entity_id! {
///     /// A widget's id.
///     pub struct WidgetId;
/// }
/// let id = WidgetId::generate();
/// assert_eq!(WidgetId::from_uuid(id.as_uuid()), id);
/// ```
#[macro_export]
macro_rules! entity_id {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis struct $name($crate::__uuid::Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7), so ids sort by creation.
            pub fn generate() -> Self {
                Self($crate::__uuid::Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub fn from_uuid(id: $crate::__uuid::Uuid) -> Self {
                Self(id)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> $crate::__uuid::Uuid {
                self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl $crate::__serde::Serialize for $name {
            fn serialize<S: $crate::__serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                $crate::__serde::Serialize::serialize(&self.0, serializer)
            }
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                <$crate::__uuid::Uuid as $crate::__serde::Deserialize>::deserialize(deserializer)
                    .map(Self)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::entity_id! {
        /// Two ids of one test.
        struct OneId;
    }
    crate::entity_id! {
        /// Another entity.
        struct OtherId;
    }

    #[test]
    fn ids_round_trip_sort_by_creation_and_print_as_uuids() {
        let first = OneId::generate();
        let second = OneId::generate();
        assert!(first < second);
        assert_eq!(OneId::from_uuid(first.as_uuid()), first);
        assert_eq!(first.to_string(), first.as_uuid().to_string());
        // A different entity's id over the same UUID is a different type.
        let other = OtherId::from_uuid(first.as_uuid());
        assert_eq!(other.as_uuid(), first.as_uuid());
        assert_ne!(OtherId::generate(), other);
    }

    #[test]
    fn an_id_parses_from_its_uuid_text_and_nothing_else() {
        use serde::Deserialize as _;
        use serde::de::value::{Error, StrDeserializer};
        let id = OneId::generate();
        let text = id.to_string();
        let parsed = OneId::deserialize(StrDeserializer::<Error>::new(&text));
        assert_eq!(parsed.ok(), Some(id));
        for bad in [
            "",
            "1",
            "../patients",
            "00000000-0000-0000-0000-00000000000g",
        ] {
            assert!(OneId::deserialize(StrDeserializer::<Error>::new(bad)).is_err());
        }
    }
}
