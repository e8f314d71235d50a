use super::*;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_live_call_puts_a_claimed_task_on_the_phone_and_nothing_else_does() {
    for task in TaskStatus::ALL {
        let moved = after_call(task, CallState::InProgress);
        if task == TaskStatus::Claimed {
            assert_eq!(moved, Some((TaskStatus::Calling, None)));
        } else {
            assert_eq!(moved, None, "{task}");
        }
    }
}

#[test]
fn a_call_that_fails_or_ends_early_fails_the_task_with_a_reason() {
    for call in [
        CallState::Busy,
        CallState::NoAnswer,
        CallState::Failed,
        CallState::Canceled,
    ] {
        for task in [TaskStatus::Claimed, TaskStatus::Calling] {
            let (to, reason) = after_call(task, call).unwrap_or((task, None));
            assert_eq!(to, TaskStatus::Failed, "{task} on {call:?}");
            assert!(reason.is_some());
        }
        // A finished task is never reopened or changed by its call.
        for task in [
            TaskStatus::Completed,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
        ] {
            assert_eq!(after_call(task, call), None);
        }
    }
    assert_eq!(
        after_call(TaskStatus::Calling, CallState::Completed).map(|m| m.0),
        Some(TaskStatus::Failed)
    );
    assert_eq!(
        after_call(TaskStatus::Completed, CallState::Completed),
        None
    );
    // Every move it makes is one the task's state machine allows.
    for task in TaskStatus::ALL {
        for call in CallState::ALL {
            if let Some((to, _)) = after_call(task, call) {
                assert!(task.may_become(to), "{task} -> {to}");
            }
        }
    }
}

#[test]
fn provider_ids_are_short_and_alphanumeric() {
    assert!(ProviderSid::parse("CA1234567890abcdef1234567890abcdef").is_some());
    for bad in [
        "",
        "C",
        "CA 1",
        "CA/../x",
        "CA%2F",
        &"A".repeat(65),
        "CA\u{e9}",
    ] {
        assert!(ProviderSid::parse(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn call_states_use_the_providers_names() {
    for s in CallState::ALL {
        assert_eq!(CallState::parse(s.as_str()), Some(s));
    }
    assert_eq!(CallState::parse("initiated"), Some(CallState::Queued));
    assert_eq!(CallState::parse("IN-PROGRESS"), None);
}

#[test]
fn a_callback_is_parsed_only_from_the_fields_its_route_takes() {
    let status = params(&[("CallSid", "CA1"), ("CallStatus", "in-progress")]);
    assert_eq!(
        Callback::parse(CallbackKind::Status, &status),
        Some(Callback::Status {
            call: ProviderSid::parse("CA1").unwrap_or_else(|| unreachable!()),
            state: CallState::InProgress
        })
    );
    assert_eq!(Callback::parse(CallbackKind::Recording, &status), None);
    let recording = params(&[
        ("CallSid", "CA1"),
        ("RecordingSid", "RE1"),
        ("RecordingStatus", "completed"),
        ("RecordingDuration", "42"),
    ]);
    assert!(matches!(
        Callback::parse(CallbackKind::Recording, &recording),
        Some(Callback::Recording {
            duration_secs: 42,
            ..
        })
    ));
    let unfinished = params(&[
        ("CallSid", "CA1"),
        ("RecordingSid", "RE1"),
        ("RecordingStatus", "in-progress"),
        ("RecordingDuration", "42"),
    ]);
    assert_eq!(Callback::parse(CallbackKind::Recording, &unfinished), None);
    let path = params(&[("CallSid", "../CA1"), ("CallStatus", "busy")]);
    assert_eq!(Callback::parse(CallbackKind::Status, &path), None);
}

#[test]
fn debug_never_shows_the_token_or_the_number() {
    let account = TelephonyAccount {
        account_sid: ProviderSid::parse("AC1").unwrap_or_else(|| unreachable!()),
        auth_token: "s3cret-token".to_owned().into(),
        caller_number: "+15550100".to_owned(),
        bot_stream_url: "wss://bot.example/stream".to_owned(),
        front_desk_number: None,
        calling_hours: crate::appointment::ivr::CallingHours::DEFAULT,
    };
    assert!(!format!("{account:?}").contains("s3cret"));
    let transfer = Script::Transfer {
        number: Phi::new("+16175550123".to_owned()),
    };
    assert!(!format!("{transfer:?}").contains("555"));
}

#[test]
fn a_call_slot_is_stored_like_a_call_id_and_never_taken_for_one() {
    let slot = CallSlot::new(uuid::Uuid::from_u128(7));
    let other = CallSlot::new(uuid::Uuid::from_u128(8));
    // It fits where a call id is stored, and each slot's is its own.
    assert_eq!(
        ProviderSid::parse(slot.placeholder().as_str()).as_ref(),
        Some(slot.placeholder())
    );
    assert_ne!(slot.placeholder(), other.placeholder());
    assert!(CallSlot::is_placeholder(slot.placeholder()));
    // A provider's call id is never read as a slot.
    for sid in ["CA0123456789abcdef0123456789abcdef", "RE12", "AC12"] {
        let sid = ProviderSid::parse(sid).unwrap_or_else(|| panic!("{sid}"));
        assert!(!CallSlot::is_placeholder(&sid), "{sid}");
    }
}
