//! Data layouts of the MIDs Jidoka speaks, by MID and revision, as the Open Protocol
//! specification publishes them (parameter id, name, width, type). Revisions that extend an
//! earlier one are stored as that revision plus the added fields. Checked against every
//! telegram in `../shared/data/open_protocol_vectors` that has one of these MIDs (see the
//! `vectors` test); layouts without a vector are marked in [`UNVERIFIED`].
//!
//! MID 0900 (trace curve, binary samples) is decoded in [`super::trace`].

use super::fields::{F, Spec, Ty, W};

const M0001_R1: &[Spec] = &[];
const M0001_R2: &[Spec] = &[];
const M0001_R3: &[Spec] = &[];
const M0001_R4: &[Spec] = &[];
const M0001_R5: &[Spec] = &[];
const M0001_R6: &[Spec] = &[];
const M0001_R7: &[Spec] = &[Spec::Field(F { id: Some(1), name: "keep_alive", width: W::Fixed(1), ty: Ty::Int })];
const M0002_R1: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "cell_id", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(2), name: "channel_id", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: Some(3), name: "controller_name", width: W::Fixed(25), ty: Ty::Text }),
];
const M0002_R2: &[Spec] = &[Spec::Field(F { id: Some(4), name: "supplier_code", width: W::Fixed(3), ty: Ty::Text })];
const M0002_R3: &[Spec] = &[
    Spec::Field(F { id: Some(5), name: "open_protocol_version", width: W::Fixed(19), ty: Ty::Text }),
    Spec::Field(F { id: Some(6), name: "controller_software_version", width: W::Fixed(19), ty: Ty::Text }),
    Spec::Field(F { id: Some(7), name: "tool_software_version", width: W::Fixed(19), ty: Ty::Text }),
];
const M0002_R4: &[Spec] = &[
    Spec::Field(F { id: Some(8), name: "rbu_type", width: W::Fixed(24), ty: Ty::Text }),
    Spec::Field(F { id: Some(9), name: "controller_serial_number", width: W::Fixed(10), ty: Ty::Text }),
];
const M0002_R5: &[Spec] = &[
    Spec::Field(F { id: Some(10), name: "system_type", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: Some(11), name: "system_subtype", width: W::Fixed(3), ty: Ty::Int }),
];
const M0002_R6: &[Spec] = &[
    Spec::Field(F { id: Some(12), name: "sequence_number_support", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(13), name: "linking_handling_support", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(14), name: "station_cell_id", width: W::Fixed(10), ty: Ty::Int }),
    Spec::Field(F { id: Some(15), name: "station_cell_name", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(16), name: "client_id", width: W::Fixed(1), ty: Ty::Text }),
];
const M0002_R7: &[Spec] =
    &[Spec::Field(F { id: Some(17), name: "optional_keep_alive", width: W::Fixed(1), ty: Ty::Int })];
const M0003_R1: &[Spec] = &[];
const M0004_R1: &[Spec] = &[
    Spec::Field(F { id: None, name: "failed_mid", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "error_code", width: W::Fixed(2), ty: Ty::Int }),
];
const M0004_R2: &[Spec] = &[
    Spec::Field(F { id: None, name: "failed_mid", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "error_code", width: W::Fixed(3), ty: Ty::Int }),
];
const M0005_R1: &[Spec] = &[Spec::Field(F { id: None, name: "accepted_mid", width: W::Fixed(4), ty: Ty::Int })];
const M0006_R1: &[Spec] = &[
    Spec::Field(F { id: None, name: "mid", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "wanted_revision", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "extra_data_length", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "extra_data", width: W::From("extra_data_length"), ty: Ty::Text }),
];
const M0008_R1: &[Spec] = &[
    Spec::Field(F { id: None, name: "mid", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "wanted_revision", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "extra_data_length", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "extra_data", width: W::From("extra_data_length"), ty: Ty::Text }),
];
const M0009_R1: &[Spec] = &[
    Spec::Field(F { id: None, name: "mid", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "wanted_revision", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "extra_data_length", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "extra_data", width: W::From("extra_data_length"), ty: Ty::Text }),
];
const M0014_R1: &[Spec] = &[];
const M0015_R1: &[Spec] = &[
    Spec::Field(F { id: None, name: "parameter_set_id", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "last_change_in_parameter_set", width: W::Fixed(19), ty: Ty::Timestamp }),
];
const M0015_R2: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "parameter_set_id", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: Some(2), name: "parameter_set_name", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(3), name: "last_change_in_parameter_set", width: W::Fixed(19), ty: Ty::Timestamp }),
    Spec::Field(F { id: Some(4), name: "rotation_direction", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(5), name: "batch_size", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: Some(6), name: "torque_min", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(7), name: "torque_max", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(8), name: "torque_final_target", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(9), name: "angle_min", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(10), name: "angle_max", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(11), name: "final_angle_target", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(12), name: "first_target", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(13), name: "start_final_angle", width: W::Fixed(6), ty: Ty::Num100 }),
];
const M0016_R1: &[Spec] = &[];
const M0017_R1: &[Spec] = &[];
const M0050_R1: &[Spec] = &[Spec::Field(F { id: None, name: "vin_number", width: W::Fill, ty: Ty::Text })];
const M0051_R1: &[Spec] = &[];
const M0051_R2: &[Spec] = &[];
const M0052_R1: &[Spec] = &[Spec::Field(F { id: None, name: "vin_number", width: W::Fill, ty: Ty::Text })];
const M0052_R2: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "vin_number", width: W::Fill, ty: Ty::Text }),
    Spec::Field(F { id: Some(2), name: "identifier_result_part_2", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(3), name: "identifier_result_part_3", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(4), name: "identifier_result_part_4", width: W::Fixed(25), ty: Ty::Text }),
];
const M0053_R1: &[Spec] = &[];
const M0054_R1: &[Spec] = &[];
const M0060_R1: &[Spec] = &[];
const M0060_R2: &[Spec] = &[];
const M0060_R3: &[Spec] = &[];
const M0060_R4: &[Spec] = &[];
const M0060_R5: &[Spec] = &[];
const M0060_R6: &[Spec] = &[];
const M0060_R7: &[Spec] = &[];
const M0060_R8: &[Spec] = &[];
const M0060_R9: &[Spec] = &[];
const M0060_R10: &[Spec] = &[];
const M0060_R11: &[Spec] = &[];
const M0060_R998: &[Spec] = &[];
const M0060_R999: &[Spec] = &[];
const M0061_R1: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "cell_id", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(2), name: "channel_id", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: Some(3), name: "torque_controller_name", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(4), name: "vin_number", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(5), name: "job_id", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: Some(6), name: "parameter_set_id", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: Some(7), name: "batch_size", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(8), name: "batch_counter", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(9), name: "tightening_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(10), name: "torque_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(11), name: "angle_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(12), name: "torque_min_limit", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(13), name: "torque_max_limit", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(14), name: "torque_final_target", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(15), name: "torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(16), name: "angle_min", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(17), name: "angle_max", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(18), name: "final_angle_target", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(19), name: "angle", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(20), name: "timestamp", width: W::Fixed(19), ty: Ty::Timestamp }),
    Spec::Field(F { id: Some(21), name: "last_change_in_parameter_set", width: W::Fixed(19), ty: Ty::Timestamp }),
    Spec::Field(F { id: Some(22), name: "batch_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(23), name: "tightening_id", width: W::Fixed(10), ty: Ty::Int }),
];
const M0061_R2: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "cell_id", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(2), name: "channel_id", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: Some(3), name: "torque_controller_name", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(4), name: "vin_number", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(5), name: "job_id", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(6), name: "parameter_set_id", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: Some(7), name: "strategy", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: Some(8), name: "strategy_options", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(9), name: "batch_size", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(10), name: "batch_counter", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(11), name: "tightening_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(12), name: "batch_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(13), name: "torque_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(14), name: "angle_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(15), name: "rundown_angle_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(16), name: "current_monitoring_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(17), name: "selftap_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(18), name: "prevail_torque_monitoring_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(19), name: "prevail_torque_compensate_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(20), name: "tightening_error_status", width: W::Fixed(10), ty: Ty::Int }),
    Spec::Field(F { id: Some(21), name: "torque_min_limit", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(22), name: "torque_max_limit", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(23), name: "torque_final_target", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(24), name: "torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(25), name: "angle_min", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(26), name: "angle_max", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(27), name: "final_angle_target", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(28), name: "angle", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(29), name: "rundown_angle_min", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(30), name: "rundown_angle_max", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(31), name: "rundown_angle", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(32), name: "current_monitoring_min", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: Some(33), name: "current_monitoring_max", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: Some(34), name: "current_monitoring_value", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: Some(35), name: "selftap_min", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(36), name: "selftap_max", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(37), name: "selftap_torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(38), name: "prevail_torque_monitoring_min", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(39), name: "prevail_torque_monitoring_max", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(40), name: "prevail_torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(41), name: "tightening_id", width: W::Fixed(10), ty: Ty::Int }),
    Spec::Field(F { id: Some(42), name: "job_sequence_number", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(43), name: "sync_tightening_id", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(44), name: "tool_serial_number", width: W::Fixed(14), ty: Ty::Text }),
    Spec::Field(F { id: Some(45), name: "timestamp", width: W::Fixed(19), ty: Ty::Timestamp }),
    Spec::Field(F { id: Some(46), name: "last_change_in_parameter_set", width: W::Fixed(19), ty: Ty::Timestamp }),
];
const M0061_R3: &[Spec] = &[
    Spec::Field(F { id: Some(47), name: "parameter_set_name", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(48), name: "torque_values_unit", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(49), name: "result_type", width: W::Fixed(2), ty: Ty::Int }),
];
const M0061_R4: &[Spec] = &[
    Spec::Field(F { id: Some(50), name: "identifier_result_part_2", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(51), name: "identifier_result_part_3", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(52), name: "identifier_result_part_4", width: W::Fixed(25), ty: Ty::Text }),
];
const M0061_R5: &[Spec] =
    &[Spec::Field(F { id: Some(53), name: "customer_tightening_error_code", width: W::Fixed(4), ty: Ty::Text })];
const M0061_R6: &[Spec] = &[
    Spec::Field(F { id: Some(54), name: "prevail_torque_compensate_value", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(55), name: "tightening_error_status_2", width: W::Fixed(10), ty: Ty::Int }),
];
const M0061_R7: &[Spec] = &[
    Spec::Field(F { id: Some(56), name: "compensated_angle", width: W::Fixed(7), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(57), name: "final_angle_decimal", width: W::Fixed(7), ty: Ty::Num100 }),
];
const M0061_R8: &[Spec] = &[
    Spec::Field(F { id: Some(58), name: "start_final_angle", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(59), name: "post_view_torque_activated", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(60), name: "post_view_torque_high_limit", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(61), name: "post_view_torque_low_limit", width: W::Fixed(6), ty: Ty::Num100 }),
];
const M0061_R9: &[Spec] = &[
    Spec::Field(F { id: Some(62), name: "current_monitoring_amp", width: W::Fixed(5), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(63), name: "current_monitoring_amp_min", width: W::Fixed(5), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(64), name: "current_monitoring_amp_max", width: W::Fixed(5), ty: Ty::Num100 }),
];
const M0061_R10: &[Spec] = &[
    Spec::Field(F { id: Some(65), name: "angle_numerator_scale_factor", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(66), name: "angle_denominator_scale_factor", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(67), name: "overall_angle_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(68), name: "overall_angle_min", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(69), name: "overall_angle_max", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(70), name: "overall_angle", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(71), name: "peak_torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(72), name: "residual_breakaway_torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(73), name: "start_rundown_angle", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(74), name: "rundown_angle_complete", width: W::Fixed(6), ty: Ty::Num100 }),
];
const M0061_R11: &[Spec] = &[
    Spec::Field(F { id: Some(75), name: "click_torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(76), name: "click_angle", width: W::Fixed(5), ty: Ty::Int }),
];
const M0061_R998: &[Spec] = &[
    Spec::Field(F { id: Some(56), name: "number_of_stages_in_multistage", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: Some(57), name: "number_of_stage_results", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Repeat {
        id: Some(58),
        name: "stage_results",
        count: "number_of_stage_results",
        fields: &[
            F { id: None, name: "stage_torque", width: W::Fixed(6), ty: Ty::Num100 },
            F { id: None, name: "stage_angle", width: W::Fixed(5), ty: Ty::Int },
        ],
    },
];
const M0061_R999: &[Spec] = &[
    Spec::Field(F { id: None, name: "vin_number", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: None, name: "job_id", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "parameter_set_id", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "batch_size", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "batch_counter", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "batch_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "tightening_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "torque_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "angle_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: None, name: "angle", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "timestamp", width: W::Fixed(19), ty: Ty::Timestamp }),
    Spec::Field(F { id: None, name: "last_change_in_parameter_set", width: W::Fixed(19), ty: Ty::Timestamp }),
    Spec::Field(F { id: None, name: "tightening_id", width: W::Fixed(10), ty: Ty::Int }),
];
const M0062_R1: &[Spec] = &[];
const M0062_R2: &[Spec] = &[];
const M0062_R3: &[Spec] = &[];
const M0062_R4: &[Spec] = &[];
const M0062_R5: &[Spec] = &[];
const M0062_R6: &[Spec] = &[];
const M0062_R7: &[Spec] = &[];
const M0062_R8: &[Spec] = &[];
const M0062_R9: &[Spec] = &[];
const M0062_R10: &[Spec] = &[];
const M0062_R11: &[Spec] = &[];
const M0062_R998: &[Spec] = &[];
const M0062_R999: &[Spec] = &[];
const M0063_R1: &[Spec] = &[];
const M0063_R2: &[Spec] = &[];
const M0063_R3: &[Spec] = &[];
const M0063_R4: &[Spec] = &[];
const M0063_R5: &[Spec] = &[];
const M0063_R6: &[Spec] = &[];
const M0063_R7: &[Spec] = &[];
const M0063_R8: &[Spec] = &[];
const M0063_R9: &[Spec] = &[];
const M0063_R10: &[Spec] = &[];
const M0063_R11: &[Spec] = &[];
const M0063_R998: &[Spec] = &[];
const M0063_R999: &[Spec] = &[];
const M0064_R1: &[Spec] = &[Spec::Field(F { id: None, name: "tightening_id", width: W::Fixed(10), ty: Ty::Int })];
const M0064_R2: &[Spec] = &[Spec::Field(F { id: None, name: "tightening_id", width: W::Fixed(10), ty: Ty::Int })];
const M0064_R3: &[Spec] = &[Spec::Field(F { id: None, name: "tightening_id", width: W::Fixed(10), ty: Ty::Int })];
const M0064_R4: &[Spec] = &[Spec::Field(F { id: None, name: "tightening_id", width: W::Fixed(10), ty: Ty::Int })];
const M0064_R5: &[Spec] = &[Spec::Field(F { id: None, name: "tightening_id", width: W::Fixed(10), ty: Ty::Int })];
const M0064_R6: &[Spec] = &[Spec::Field(F { id: None, name: "tightening_id", width: W::Fixed(10), ty: Ty::Int })];
const M0064_R7: &[Spec] = &[Spec::Field(F { id: None, name: "tightening_id", width: W::Fixed(10), ty: Ty::Int })];
const M0064_R8: &[Spec] = &[Spec::Field(F { id: None, name: "tightening_id", width: W::Fixed(10), ty: Ty::Int })];
const M0064_R9: &[Spec] = &[Spec::Field(F { id: None, name: "tightening_id", width: W::Fixed(10), ty: Ty::Int })];
const M0064_R10: &[Spec] = &[Spec::Field(F { id: None, name: "offline_result", width: W::Fixed(1), ty: Ty::Int })];
const M0064_R11: &[Spec] = &[Spec::Field(F { id: None, name: "offline_result", width: W::Fixed(1), ty: Ty::Int })];
const M0065_R1: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "tightening_id", width: W::Fixed(10), ty: Ty::Int }),
    Spec::Field(F { id: Some(2), name: "vin_number", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(3), name: "parameter_set_id", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: Some(4), name: "batch_counter", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(5), name: "tightening_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(6), name: "torque_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(7), name: "angle_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(8), name: "torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(9), name: "angle", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(10), name: "timestamp", width: W::Fixed(19), ty: Ty::Timestamp }),
    Spec::Field(F { id: Some(11), name: "batch_status", width: W::Fixed(1), ty: Ty::Int }),
];
const M0065_R2: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "tightening_id", width: W::Fixed(10), ty: Ty::Int }),
    Spec::Field(F { id: Some(2), name: "vin_number", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(3), name: "job_id", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(4), name: "parameter_set_id", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: Some(5), name: "strategy", width: W::Fixed(2), ty: Ty::Int }),
    Spec::Field(F { id: Some(6), name: "strategy_options", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(7), name: "batch_size", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(8), name: "batch_counter", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: Some(9), name: "tightening_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(10), name: "batch_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(11), name: "torque_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(12), name: "angle_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(13), name: "rundown_angle_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(14), name: "current_monitoring_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(15), name: "selftap_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(16), name: "prevail_torque_monitoring_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(17), name: "prevail_torque_compensate_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(18), name: "tightening_error_status", width: W::Fixed(10), ty: Ty::Int }),
    Spec::Field(F { id: Some(19), name: "torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(20), name: "angle", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(21), name: "rundown_angle", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(22), name: "current_monitoring_value", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Field(F { id: Some(23), name: "selftap_torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(24), name: "prevail_torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(25), name: "job_sequence_number", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(26), name: "sync_tightening_id", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(27), name: "tool_serial_number", width: W::Fixed(14), ty: Ty::Text }),
    Spec::Field(F { id: Some(28), name: "timestamp", width: W::Fixed(19), ty: Ty::Timestamp }),
];
const M0065_R3: &[Spec] = &[
    Spec::Field(F { id: Some(29), name: "torque_values_unit", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(30), name: "result_type", width: W::Fixed(2), ty: Ty::Int }),
];
const M0065_R4: &[Spec] = &[
    Spec::Field(F { id: Some(31), name: "identifier_result_part_2", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(32), name: "identifier_result_part_3", width: W::Fixed(25), ty: Ty::Text }),
    Spec::Field(F { id: Some(33), name: "identifier_result_part_4", width: W::Fixed(25), ty: Ty::Text }),
];
const M0065_R5: &[Spec] =
    &[Spec::Field(F { id: Some(34), name: "customer_tightening_error_code", width: W::Fixed(4), ty: Ty::Text })];
const M0065_R6: &[Spec] = &[
    Spec::Field(F { id: Some(35), name: "prevail_torque_compensate_value", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(36), name: "tightening_error_status_2", width: W::Fixed(10), ty: Ty::Int }),
];
const M0065_R7: &[Spec] = &[
    Spec::Field(F { id: Some(37), name: "station_id", width: W::Fixed(10), ty: Ty::Int }),
    Spec::Field(F { id: Some(38), name: "station_name", width: W::Fixed(25), ty: Ty::Text }),
];
const M0065_R8: &[Spec] = &[
    Spec::Field(F { id: Some(39), name: "start_final_angle", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(40), name: "post_view_torque_activated", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(41), name: "post_view_torque_high_limit", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(42), name: "post_view_torque_low_limit", width: W::Fixed(6), ty: Ty::Num100 }),
];
const M0065_R9: &[Spec] = &[
    Spec::Field(F { id: Some(43), name: "current_monitoring_amp", width: W::Fixed(5), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(44), name: "current_monitoring_amp_min", width: W::Fixed(5), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(45), name: "current_monitoring_amp_max", width: W::Fixed(5), ty: Ty::Num100 }),
];
const M0065_R10: &[Spec] = &[
    Spec::Field(F { id: Some(46), name: "angle_numerator_scale_factor", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(47), name: "angle_denominator_scale_factor", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(48), name: "overall_angle_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(49), name: "overall_angle_min", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(50), name: "overall_angle_max", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(51), name: "overall_angle", width: W::Fixed(5), ty: Ty::Int }),
    Spec::Field(F { id: Some(52), name: "peak_torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(53), name: "residual_breakaway_torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(54), name: "start_rundown_angle", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(55), name: "rundown_angle_complete", width: W::Fixed(6), ty: Ty::Num100 }),
];
const M0065_R11: &[Spec] = &[
    Spec::Field(F { id: Some(56), name: "click_torque", width: W::Fixed(6), ty: Ty::Num100 }),
    Spec::Field(F { id: Some(57), name: "click_angle", width: W::Fixed(5), ty: Ty::Int }),
];
const M0070_R1: &[Spec] = &[];
const M0070_R2: &[Spec] = &[];
const M0070_R3: &[Spec] = &[];
const M0071_R1: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "error_code", width: W::Fixed(4), ty: Ty::Text }),
    Spec::Field(F { id: Some(2), name: "controller_ready_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(3), name: "tool_ready_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(4), name: "time", width: W::Fixed(19), ty: Ty::Timestamp }),
];
const M0071_R2: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "error_code", width: W::Fixed(5), ty: Ty::TextRight }),
    Spec::Field(F { id: Some(2), name: "controller_ready_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(3), name: "tool_ready_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(4), name: "time", width: W::Fixed(19), ty: Ty::Timestamp }),
    Spec::Field(F { id: Some(5), name: "alarm_text", width: W::Fixed(50), ty: Ty::Text }),
];
const M0072_R1: &[Spec] = &[];
const M0072_R2: &[Spec] = &[];
const M0072_R3: &[Spec] = &[];
const M0073_R1: &[Spec] = &[];
const M0073_R2: &[Spec] = &[];
const M0073_R3: &[Spec] = &[];
const M0074_R1: &[Spec] = &[Spec::Field(F { id: None, name: "error_code", width: W::Fixed(4), ty: Ty::Text })];
const M0074_R2: &[Spec] = &[Spec::Field(F { id: None, name: "error_code", width: W::Fixed(5), ty: Ty::TextRight })];
const M0075_R1: &[Spec] = &[];
const M0075_R2: &[Spec] = &[];
const M0075_R3: &[Spec] = &[];
const M0076_R1: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "alarm_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(2), name: "error_code", width: W::Fixed(4), ty: Ty::Text }),
    Spec::Field(F { id: Some(3), name: "controller_ready_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(4), name: "tool_ready_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(5), name: "time", width: W::Fixed(19), ty: Ty::Timestamp }),
];
const M0076_R2: &[Spec] = &[
    Spec::Field(F { id: Some(1), name: "alarm_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(2), name: "error_code", width: W::Fixed(5), ty: Ty::TextRight }),
    Spec::Field(F { id: Some(3), name: "controller_ready_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(4), name: "tool_ready_status", width: W::Fixed(1), ty: Ty::Int }),
    Spec::Field(F { id: Some(5), name: "time", width: W::Fixed(19), ty: Ty::Timestamp }),
];
const M0076_R3: &[Spec] = &[Spec::Field(F { id: Some(6), name: "tool_health", width: W::Fixed(1), ty: Ty::Int })];
const M0077_R1: &[Spec] = &[];
const M0078_R1: &[Spec] = &[];
const M0901_R1: &[Spec] = &[
    Spec::Field(F { id: None, name: "result_data_identifier", width: W::Fixed(10), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "timestamp", width: W::Fixed(19), ty: Ty::Timestamp }),
    Spec::Field(F { id: None, name: "number_of_pids", width: W::Fixed(3), ty: Ty::Int }),
    Spec::Repeat { id: None, name: "data_fields", count: "number_of_pids", fields: super::trace::PID_RECORD },
];
const M9997_R1: &[Spec] = &[Spec::Field(F { id: None, name: "mid", width: W::Fixed(4), ty: Ty::Int })];
const M9998_R1: &[Spec] = &[
    Spec::Field(F { id: None, name: "mid", width: W::Fixed(4), ty: Ty::Int }),
    Spec::Field(F { id: None, name: "error_code", width: W::Fixed(4), ty: Ty::Int }),
];
const M9999_R1: &[Spec] = &[];
/// The highest ordinary revision any layout here has (998 and 999 are vendor revisions).
pub const MAX_REVISION: u16 = 11;

/// The layout of `mid` at `revision` (revision 0 or blank is 1), if known.
pub fn layout(mid: u16, revision: u16) -> Option<Vec<Spec>> {
    let revision = revision.max(1);
    let parts: &[&[Spec]] = match (mid, revision) {
        (1, 1) => &[M0001_R1],
        (1, 2) => &[M0001_R2],
        (1, 3) => &[M0001_R3],
        (1, 4) => &[M0001_R4],
        (1, 5) => &[M0001_R5],
        (1, 6) => &[M0001_R6],
        (1, 7) => &[M0001_R7],
        (2, 1) => &[M0002_R1],
        (2, 2) => &[M0002_R1, M0002_R2],
        (2, 3) => &[M0002_R1, M0002_R2, M0002_R3],
        (2, 4) => &[M0002_R1, M0002_R2, M0002_R3, M0002_R4],
        (2, 5) => &[M0002_R1, M0002_R2, M0002_R3, M0002_R4, M0002_R5],
        (2, 6) => &[M0002_R1, M0002_R2, M0002_R3, M0002_R4, M0002_R5, M0002_R6],
        (2, 7) => &[M0002_R1, M0002_R2, M0002_R3, M0002_R4, M0002_R5, M0002_R6, M0002_R7],
        (3, 1) => &[M0003_R1],
        (4, 1) => &[M0004_R1],
        (4, 2) => &[M0004_R2],
        (5, 1) => &[M0005_R1],
        (6, 1) => &[M0006_R1],
        (8, 1) => &[M0008_R1],
        (9, 1) => &[M0009_R1],
        (14, 1) => &[M0014_R1],
        (15, 1) => &[M0015_R1],
        (15, 2) => &[M0015_R2],
        (16, 1) => &[M0016_R1],
        (17, 1) => &[M0017_R1],
        (50, 1) => &[M0050_R1],
        (51, 1) => &[M0051_R1],
        (51, 2) => &[M0051_R2],
        (52, 1) => &[M0052_R1],
        (52, 2) => &[M0052_R2],
        (53, 1) => &[M0053_R1],
        (54, 1) => &[M0054_R1],
        (60, 1) => &[M0060_R1],
        (60, 2) => &[M0060_R2],
        (60, 3) => &[M0060_R3],
        (60, 4) => &[M0060_R4],
        (60, 5) => &[M0060_R5],
        (60, 6) => &[M0060_R6],
        (60, 7) => &[M0060_R7],
        (60, 8) => &[M0060_R8],
        (60, 9) => &[M0060_R9],
        (60, 10) => &[M0060_R10],
        (60, 11) => &[M0060_R11],
        (60, 998) => &[M0060_R998],
        (60, 999) => &[M0060_R999],
        (61, 1) => &[M0061_R1],
        (61, 2) => &[M0061_R2],
        (61, 3) => &[M0061_R2, M0061_R3],
        (61, 4) => &[M0061_R2, M0061_R3, M0061_R4],
        (61, 5) => &[M0061_R2, M0061_R3, M0061_R4, M0061_R5],
        (61, 6) => &[M0061_R2, M0061_R3, M0061_R4, M0061_R5, M0061_R6],
        (61, 7) => &[M0061_R2, M0061_R3, M0061_R4, M0061_R5, M0061_R6, M0061_R7],
        (61, 8) => &[M0061_R2, M0061_R3, M0061_R4, M0061_R5, M0061_R6, M0061_R7, M0061_R8],
        (61, 9) => &[M0061_R2, M0061_R3, M0061_R4, M0061_R5, M0061_R6, M0061_R7, M0061_R8, M0061_R9],
        (61, 10) => &[M0061_R2, M0061_R3, M0061_R4, M0061_R5, M0061_R6, M0061_R7, M0061_R8, M0061_R9, M0061_R10],
        (61, 11) => {
            &[M0061_R2, M0061_R3, M0061_R4, M0061_R5, M0061_R6, M0061_R7, M0061_R8, M0061_R9, M0061_R10, M0061_R11]
        }
        (61, 998) => &[M0061_R2, M0061_R3, M0061_R4, M0061_R5, M0061_R6, M0061_R998],
        (61, 999) => &[M0061_R999],
        (62, 1) => &[M0062_R1],
        (62, 2) => &[M0062_R2],
        (62, 3) => &[M0062_R3],
        (62, 4) => &[M0062_R4],
        (62, 5) => &[M0062_R5],
        (62, 6) => &[M0062_R6],
        (62, 7) => &[M0062_R7],
        (62, 8) => &[M0062_R8],
        (62, 9) => &[M0062_R9],
        (62, 10) => &[M0062_R10],
        (62, 11) => &[M0062_R11],
        (62, 998) => &[M0062_R998],
        (62, 999) => &[M0062_R999],
        (63, 1) => &[M0063_R1],
        (63, 2) => &[M0063_R2],
        (63, 3) => &[M0063_R3],
        (63, 4) => &[M0063_R4],
        (63, 5) => &[M0063_R5],
        (63, 6) => &[M0063_R6],
        (63, 7) => &[M0063_R7],
        (63, 8) => &[M0063_R8],
        (63, 9) => &[M0063_R9],
        (63, 10) => &[M0063_R10],
        (63, 11) => &[M0063_R11],
        (63, 998) => &[M0063_R998],
        (63, 999) => &[M0063_R999],
        (64, 1) => &[M0064_R1],
        (64, 2) => &[M0064_R2],
        (64, 3) => &[M0064_R3],
        (64, 4) => &[M0064_R4],
        (64, 5) => &[M0064_R5],
        (64, 6) => &[M0064_R6],
        (64, 7) => &[M0064_R7],
        (64, 8) => &[M0064_R8],
        (64, 9) => &[M0064_R9],
        (64, 10) => &[M0064_R1, M0064_R10],
        (64, 11) => &[M0064_R1, M0064_R11],
        (65, 1) => &[M0065_R1],
        (65, 2) => &[M0065_R2],
        (65, 3) => &[M0065_R2, M0065_R3],
        (65, 4) => &[M0065_R2, M0065_R3, M0065_R4],
        (65, 5) => &[M0065_R2, M0065_R3, M0065_R4, M0065_R5],
        (65, 6) => &[M0065_R2, M0065_R3, M0065_R4, M0065_R5, M0065_R6],
        (65, 7) => &[M0065_R2, M0065_R3, M0065_R4, M0065_R5, M0065_R6, M0065_R7],
        (65, 8) => &[M0065_R2, M0065_R3, M0065_R4, M0065_R5, M0065_R6, M0065_R7, M0065_R8],
        (65, 9) => &[M0065_R2, M0065_R3, M0065_R4, M0065_R5, M0065_R6, M0065_R7, M0065_R8, M0065_R9],
        (65, 10) => &[M0065_R2, M0065_R3, M0065_R4, M0065_R5, M0065_R6, M0065_R7, M0065_R8, M0065_R9, M0065_R10],
        (65, 11) => {
            &[M0065_R2, M0065_R3, M0065_R4, M0065_R5, M0065_R6, M0065_R7, M0065_R8, M0065_R9, M0065_R10, M0065_R11]
        }
        (70, 1) => &[M0070_R1],
        (70, 2) => &[M0070_R2],
        (70, 3) => &[M0070_R3],
        (71, 1) => &[M0071_R1],
        (71, 2) => &[M0071_R2],
        (72, 1) => &[M0072_R1],
        (72, 2) => &[M0072_R2],
        (72, 3) => &[M0072_R3],
        (73, 1) => &[M0073_R1],
        (73, 2) => &[M0073_R2],
        (73, 3) => &[M0073_R3],
        (74, 1) => &[M0074_R1],
        (74, 2) => &[M0074_R2],
        (75, 1) => &[M0075_R1],
        (75, 2) => &[M0075_R2],
        (75, 3) => &[M0075_R3],
        (76, 1) => &[M0076_R1],
        (76, 2) => &[M0076_R2],
        (76, 3) => &[M0076_R2, M0076_R3],
        (77, 1) => &[M0077_R1],
        (78, 1) => &[M0078_R1],
        (901, 1) => &[M0901_R1],
        (9997, 1) => &[M9997_R1],
        (9998, 1) => &[M9998_R1],
        (9999, 1) => &[M9999_R1],
        _ => return None,
    };
    Some(parts.iter().flat_map(|p| p.iter().copied()).collect())
}

/// Every (MID, revision) with a layout here or in [`super::trace`].
pub const KNOWN: &[(u16, u16)] = &[
    (1, 1),
    (1, 2),
    (1, 3),
    (1, 4),
    (1, 5),
    (1, 6),
    (1, 7),
    (2, 1),
    (2, 2),
    (2, 3),
    (2, 4),
    (2, 5),
    (2, 6),
    (2, 7),
    (3, 1),
    (4, 1),
    (4, 2),
    (5, 1),
    (6, 1),
    (8, 1),
    (9, 1),
    (14, 1),
    (15, 1),
    (15, 2),
    (16, 1),
    (17, 1),
    (50, 1),
    (51, 1),
    (51, 2),
    (52, 1),
    (52, 2),
    (53, 1),
    (54, 1),
    (60, 1),
    (60, 2),
    (60, 3),
    (60, 4),
    (60, 5),
    (60, 6),
    (60, 7),
    (60, 8),
    (60, 9),
    (60, 10),
    (60, 11),
    (60, 998),
    (60, 999),
    (61, 1),
    (61, 2),
    (61, 3),
    (61, 4),
    (61, 5),
    (61, 6),
    (61, 7),
    (61, 8),
    (61, 9),
    (61, 10),
    (61, 11),
    (61, 998),
    (61, 999),
    (62, 1),
    (62, 2),
    (62, 3),
    (62, 4),
    (62, 5),
    (62, 6),
    (62, 7),
    (62, 8),
    (62, 9),
    (62, 10),
    (62, 11),
    (62, 998),
    (62, 999),
    (63, 1),
    (63, 2),
    (63, 3),
    (63, 4),
    (63, 5),
    (63, 6),
    (63, 7),
    (63, 8),
    (63, 9),
    (63, 10),
    (63, 11),
    (63, 998),
    (63, 999),
    (64, 1),
    (64, 2),
    (64, 3),
    (64, 4),
    (64, 5),
    (64, 6),
    (64, 7),
    (64, 8),
    (64, 9),
    (64, 10),
    (64, 11),
    (65, 1),
    (65, 2),
    (65, 3),
    (65, 4),
    (65, 5),
    (65, 6),
    (65, 7),
    (65, 8),
    (65, 9),
    (65, 10),
    (65, 11),
    (70, 1),
    (70, 2),
    (70, 3),
    (71, 1),
    (71, 2),
    (72, 1),
    (72, 2),
    (72, 3),
    (73, 1),
    (73, 2),
    (73, 3),
    (74, 1),
    (74, 2),
    (75, 1),
    (75, 2),
    (75, 3),
    (76, 1),
    (76, 2),
    (76, 3),
    (77, 1),
    (78, 1),
    (900, 1),
    (901, 1),
    (9997, 1),
    (9998, 1),
    (9999, 1),
];

/// Layouts no telegram in the test vectors exercises: written from the specification only.
pub const UNVERIFIED: &[(u16, u16)] = &[
    (1, 2),
    (1, 4),
    (1, 5),
    (1, 6),
    (51, 2),
    (60, 1),
    (60, 2),
    (60, 3),
    (60, 4),
    (60, 5),
    (60, 6),
    (60, 7),
    (60, 8),
    (60, 9),
    (60, 10),
    (60, 11),
    (60, 999),
    (62, 1),
    (62, 2),
    (62, 3),
    (62, 4),
    (62, 6),
    (62, 7),
    (62, 8),
    (62, 9),
    (62, 10),
    (62, 11),
    (62, 998),
    (62, 999),
    (63, 1),
    (63, 3),
    (63, 4),
    (63, 5),
    (63, 6),
    (63, 7),
    (63, 8),
    (63, 9),
    (63, 10),
    (63, 11),
    (63, 998),
    (63, 999),
    (64, 2),
    (64, 3),
    (64, 4),
    (64, 5),
    (64, 6),
    (64, 7),
    (64, 8),
    (64, 9),
    (64, 11),
    (70, 1),
    (70, 3),
    (72, 1),
    (72, 3),
    (73, 1),
    (73, 3),
    (75, 2),
    (75, 3),
    (900, 1),
    (901, 1),
];

/// The name of a MID 0004 error code, as the specification gives it.
pub fn error_name(code: u16) -> Option<&'static str> {
    Some(match code {
        0 => "No error",
        1 => "Invalid data",
        2 => "Parameter set ID not present",
        3 => "Parameter set can not be set",
        4 => "Parameter set not running",
        6 => "VIN upload subscription already exists",
        7 => "VIN upload subscription does not exist",
        8 => "VIN input source not granted",
        9 => "Last tightening result subscription already exists",
        10 => "Last tightening result subscription does not exist",
        11 => "Alarm subscription already exists",
        12 => "Alarm subscription does not exist",
        13 => "Parameter set selection subscription already exists",
        14 => "Parameter set selection subscription does not exist",
        15 => "Tightening ID requested not found",
        16 => "Connection rejected, protocol busy",
        17 => "Job ID not present",
        18 => "Job info subscription already exists",
        19 => "Job info subscription does not exist",
        20 => "Job can not be set",
        21 => "Job not running",
        22 => "Not possible to execute dynamic Job request",
        23 => "Job batch decrement failed",
        24 => "Not possible to create Pset",
        25 => "Programming control not granted",
        26 => "Wrong tool type to Pset download connected",
        27 => "Tool is inaccessible",
        28 => "Job abortion is in progress",
        29 => "Tool does not exist",
        30 => "Controller is not a sync master/station controller",
        31 => "Multi-spindle status subscription already exists",
        32 => "Multi-spindle status subscription does not exist",
        33 => "Multi-spindle result subscription already exists",
        34 => "Multi-spindle result subscription does not exist",
        35 => "Other master client already connected",
        36 => "Lock type not supported",
        40 => "Job line control info subscription already exists",
        41 => "Job line control info subscription does not exist",
        42 => "Identifier input source not granted",
        43 => "Multiple identifiers work order subscription already exists",
        44 => "Multiple identifiers work order subscription does not exist",
        50 => "Status external monitored inputs subscription already exists",
        51 => "Status external monitored inputs subscription does not exist",
        52 => "IO device not connected",
        53 => "Faulty IO device ID",
        54 => "Tool Tag ID unknown",
        55 => "Tool Tag ID subscription already exists",
        56 => "Tool Tag ID subscription does not exist",
        57 => "Tool motor tuning failed",
        58 => "No alarm present",
        59 => "Tool currently in use",
        60 => "No histogram available",
        61 => "Pairing failed",
        62 => "Pairing denied",
        63 => "Pairing or pairing abortion attempt on wrong tool type",
        64 => "Pairing abortion denied",
        65 => "Pairing abortion failed",
        66 => "Pairing disconnection failed",
        67 => "Pairing in progress or already done",
        68 => "Pairing denied, no program control",
        69 => "Unsupported extra data revision",
        70 => "Calibration failed",
        71 => "Subscription already exists",
        72 => "Subscription does not exist",
        73 => "Subscribed MID unsupported",
        74 => "Subscribed MID revision unsupported",
        75 => "Requested MID unsupported",
        76 => "Requested MID revision unsupported",
        77 => "Requested on specific data not supported",
        78 => "Subscription on specific data not supported",
        79 => "Command failed",
        80 => "Audi emergency status subscription exists",
        81 => "Audi emergency status subscription does not exist",
        82 => "Automatic/Manual mode subscribe already exists",
        83 => "Automatic/Manual mode subscribe does not exist",
        84 => "Relay function subscription already exists",
        85 => "Relay function subscription does not exist",
        86 => "Selector socket info subscription already exists",
        87 => "Selector socket info subscription does not exist",
        88 => "Digin info subscription already exists",
        89 => "Digin info subscription does not exist",
        90 => "Lock at batch done subscription already exists",
        91 => "Lock at batch done subscription does not exist",
        92 => "Open Protocol commands disabled",
        93 => "Open Protocol commands disabled subscription already exists",
        94 => "Open Protocol commands disabled subscription does not exist",
        95 => "Reject request, PowerMACS is in manual mode",
        96 => "Client already connected",
        97 => "MID revision unsupported",
        98 => "Controller internal request timeout",
        99 => "Unknown MID",
        100 => "Illegal PID",
        101 => "Tightening in progress",
        102 => "Delete of object not possible",
        103 => "Illegal program ID",
        104 => "Illegal node type",
        _ => return None,
    })
}
