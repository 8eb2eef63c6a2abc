"""What Doorstep changed: KPIs per holdout group and week, aggregated in the database (`kpis`), compared with
95 % confidence intervals (`stats`), assembled into one report (`outcomes`) and drawn (`charts`).

Read-only: nothing here writes to the database or sends.
"""
