from physweep_testkit import install_physics_fakes

install_physics_fakes()
