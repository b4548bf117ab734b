//! Kafka delivery errors sorted into the two things a caller can do about them.
//!
//! Retriable: the broker or the network is away or busy; the same record may
//! succeed later unchanged (keep it, retry with backoff). Permanent: the record
//! or our credentials are wrong for this cluster; retrying the same bytes will
//! never succeed (count it, dead-letter it, tell an operator). Fatal: the
//! producer's idempotence state is broken; replace the producer and resend.
//!
//! The permanent list is explicit; every other code is retriable, because
//! wrongly retrying costs a delay while wrongly giving up loses an event.

use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Keep the record and retry it unchanged.
    Retriable,
    /// The record can never be written as it is: dead-letter it.
    Permanent,
    /// The producer itself is broken (idempotence state lost): replace it and
    /// send the record again.
    Fatal,
}

/// Classifies an error returned for one produced message.
pub fn classify(err: &KafkaError) -> ErrorClass {
    match err.rdkafka_error_code() {
        Some(code) => classify_code(code),
        // Errors without a code come from the client itself (e.g. a canceled
        // delivery future during shutdown): the record was not written.
        None => ErrorClass::Retriable,
    }
}

pub fn classify_code(code: C) -> ErrorClass {
    match code {
        // The record itself cannot be written as it is.
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::MessageBatchTooLarge
        | C::InvalidRecord
        | C::InvalidTimestamp
        | C::UnsupportedForMessageFormat
        | C::UnsupportedCompressionType
        | C::BadMessage
        | C::KeySerialization
        | C::ValueSerialization
        | C::PolicyViolation
        // The topic does not exist (and is not being created) or is unusable.
        | C::UnknownTopic
        | C::UnknownPartition
        | C::InvalidTopic
        | C::TopicDeletionDisabled
        // We are not allowed, or our configuration is wrong.
        | C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::InvalidRequiredAcks
        | C::InvalidConfig
        | C::InvalidArgument
        | C::NotImplemented
        | C::UnsupportedFeature
        | C::UnsupportedVersion
        | C::SecurityDisabled => ErrorClass::Permanent,
        // The idempotent producer hit a state librdkafka will not recover from.
        C::Fatal | C::ProducerFenced | C::InvalidProducerEpoch | C::OutOfOrderSequenceNumber => ErrorClass::Fatal,
        // Everything else: transport failures, timeouts, leader changes,
        // NotEnoughReplicas, QueueFull, AllBrokersDown, purges on shutdown...
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
            C::UnknownTopicOrPartition,
            C::PurgeQueue,
        ] {
            assert_eq!(classify_code(code), ErrorClass::Retriable, "{code:?}");
        }
    }

    #[test]
    fn bad_records_and_credentials_are_permanent() {
        for code in [
            C::MessageSizeTooLarge,
            C::TopicAuthorizationFailed,
            C::SaslAuthenticationFailed,
            C::UnknownTopic,
            C::InvalidRecord,
        ] {
            assert_eq!(classify_code(code), ErrorClass::Permanent, "{code:?}");
            assert_eq!(
                classify(&KafkaError::MessageProduction(code)),
                ErrorClass::Permanent
            );
        }
        assert_eq!(classify(&KafkaError::Canceled), ErrorClass::Retriable);
    }

    #[test]
    fn a_broken_producer_is_fatal_not_the_record() {
        for code in [C::Fatal, C::ProducerFenced, C::OutOfOrderSequenceNumber] {
            assert_eq!(classify_code(code), ErrorClass::Fatal, "{code:?}");
        }
    }
}
