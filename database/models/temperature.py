"""Temperature readings posted by the devices' firmware."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Numeric, String, func
from sqlalchemy.orm import Mapped, mapped_column

from database.models import Base


class TemperatureReading(Base):
    __tablename__ = "temperature_readings"
    __table_args__ = (CheckConstraint("unit IN ('C', 'F', 'K')", name="unit"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    temperature: Mapped[Decimal] = mapped_column(Numeric(6, 2), nullable=False)
    unit: Mapped[str] = mapped_column(String(1), nullable=False, server_default="C")
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), index=True
    )
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)

    def __repr__(self) -> str:
        return f"<TemperatureReading id={self.id} {self.temperature}{self.unit} at {self.recorded_at}>"
