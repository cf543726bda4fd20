"""subbit.fpga"""
