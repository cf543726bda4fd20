"""subbit.sim"""
