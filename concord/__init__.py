"""Concord: keeps CRM, billing, support and ERP in agreement, in real time."""
