"""Per-rule job resources: one place (the preset), defaults in the preset schema."""


def test_job_resources_come_from_the_preset_with_schema_defaults():
    from physweep.plan.sizes import preset_resource

    preset = {"resources": {"train": {"threads": 8, "mem_mb": 64000}}}
    assert preset_resource(preset, "train", "threads") == 8
    assert preset_resource(preset, "train", "gpu") == 0  # the preset schema's default
    assert preset_resource(preset, "eval", "runtime") == 30
