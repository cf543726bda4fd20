"""subbit.hw"""
