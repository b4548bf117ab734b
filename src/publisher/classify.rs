//! Kafka delivery errors sorted into what the forwarder does about them. The
//! error-policy table in `docs/delivery.md` is this file in prose.
//!
//! - **Record**: this record can never be written as it is (too large,
//!   invalid): dead-letter it; the ones behind it go on.
//! - **Destination**: the destination refuses us (unknown topic, not
//!   authorized, authentication, policy, configuration): an operator can fix
//!   it, and nothing about the record is wrong. Hold that destination's events
//!   in the spool, in order, retry with backoff and alert; other destinations
//!   keep flowing. Never a dead letter: an ACL mistake must not move a stream
//!   into the dead-letter file.
//! - **Retriable**: the broker or the network is away or busy, or a result was
//!   lost: send again from the first unsettled event after a backoff.
//! - **Fatal**: the producer's idempotence state is broken: replace the
//!   producer and send again.
//!
//! The record and destination lists are explicit; every other code is
//! retriable, because wrongly retrying costs a delay while wrongly giving up
//! loses an event.

use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Keep the record and retry it unchanged.
    Retriable,
    /// The record can never be written as it is: dead-letter it.
    Record,
    /// The destination refuses us: hold its events and retry with backoff.
    Destination(HoldReason),
    /// The producer itself is broken (idempotence state lost): replace it and
    /// send the record again.
    Fatal,
}

/// Why a destination is held (a closed set: metric label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldReason {
    UnknownTopic,
    NotAuthorized,
    Authentication,
    Policy,
    Configuration,
    /// Records were refused but no single record was at fault.
    Refused,
    /// The dead-letter file could not be written: the record stays in the spool.
    DeadLetterWrite,
    /// Nothing settled for a long time while a broker answers (no leader?).
    Stalled,
}

impl HoldReason {
    pub const ALL: [Self; 8] = [
        Self::UnknownTopic,
        Self::NotAuthorized,
        Self::Authentication,
        Self::Policy,
        Self::Configuration,
        Self::Refused,
        Self::DeadLetterWrite,
        Self::Stalled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownTopic => "unknown_topic",
            Self::NotAuthorized => "not_authorized",
            Self::Authentication => "authentication",
            Self::Policy => "policy",
            Self::Configuration => "configuration",
            Self::Refused => "refused",
            Self::DeadLetterWrite => "dead_letter_write",
            Self::Stalled => "stalled",
        }
    }
}

/// Classifies an error returned for one produced message.
pub fn classify(err: &KafkaError) -> ErrorClass {
    match err.rdkafka_error_code() {
        Some(code) => classify_code(code),
        // Errors without a code come from the client itself (e.g. a canceled
        // delivery future): the record may not have been written.
        None => ErrorClass::Retriable,
    }
}

pub fn classify_code(code: C) -> ErrorClass {
    use HoldReason as H;
    match code {
        // The record itself cannot be written as it is.
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::MessageBatchTooLarge
        | C::InvalidRecord
        | C::InvalidTimestamp
        | C::UnsupportedForMessageFormat
        | C::BadMessage
        | C::KeySerialization
        | C::ValueSerialization => ErrorClass::Record,
        // The topic does not exist (and is not being created) or is unusable.
        C::UnknownTopic
        | C::UnknownPartition
        | C::UnknownTopicOrPartition
        | C::InvalidTopic
        | C::TopicDeletionDisabled => ErrorClass::Destination(H::UnknownTopic),
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed => ErrorClass::Destination(H::NotAuthorized),
        C::SaslAuthenticationFailed
        | C::Authentication
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState => ErrorClass::Destination(H::Authentication),
        C::PolicyViolation => ErrorClass::Destination(H::Policy),
        C::InvalidRequiredAcks
        | C::InvalidConfig
        | C::InvalidArgument
        | C::NotImplemented
        | C::UnsupportedFeature
        | C::UnsupportedVersion
        | C::UnsupportedCompressionType
        | C::SecurityDisabled => ErrorClass::Destination(H::Configuration),
        // The idempotent producer hit a state librdkafka will not recover from.
        C::Fatal | C::ProducerFenced | C::InvalidProducerEpoch | C::OutOfOrderSequenceNumber => {
            ErrorClass::Fatal
        }
        // Everything else: transport failures, timeouts, leader changes,
        // NotEnoughReplicas, QueueFull, AllBrokersDown, purges...
        _ => ErrorClass::Retriable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;

    #[test]
    fn broker_outages_are_retriable() {
        for code in [
            C::MessageTimedOut,
            C::AllBrokersDown,
            C::BrokerTransportFailure,
            C::QueueFull,
            C::NotLeaderForPartition,
            C::LeaderNotAvailable,
            C::RequestTimedOut,
            C::NetworkException,
            C::NotEnoughReplicas,
            C::PurgeQueue,
        ] {
            assert_eq!(classify_code(code), ErrorClass::Retriable, "{code:?}");
        }
        assert_eq!(classify(&KafkaError::Canceled), ErrorClass::Retriable);
    }

    #[test]
    fn bad_records_are_dead_lettered() {
        for code in [
            C::MessageSizeTooLarge,
            C::InvalidRecord,
            C::InvalidTimestamp,
        ] {
            assert_eq!(classify_code(code), ErrorClass::Record, "{code:?}");
            assert_eq!(
                classify(&KafkaError::MessageProduction(code)),
                ErrorClass::Record
            );
        }
    }

    #[test]
    fn operator_mistakes_hold_the_destination_never_dead_letter() {
        for (code, reason) in [
            (C::UnknownTopic, HoldReason::UnknownTopic),
            (C::UnknownTopicOrPartition, HoldReason::UnknownTopic),
            (C::TopicAuthorizationFailed, HoldReason::NotAuthorized),
            (C::SaslAuthenticationFailed, HoldReason::Authentication),
            (C::PolicyViolation, HoldReason::Policy),
            (C::InvalidConfig, HoldReason::Configuration),
        ] {
            assert_eq!(
                classify_code(code),
                ErrorClass::Destination(reason),
                "{code:?}"
            );
        }
    }

    #[test]
    fn a_broken_producer_is_fatal_not_the_record() {
        for code in [C::Fatal, C::ProducerFenced, C::OutOfOrderSequenceNumber] {
            assert_eq!(classify_code(code), ErrorClass::Fatal, "{code:?}");
        }
    }
}
