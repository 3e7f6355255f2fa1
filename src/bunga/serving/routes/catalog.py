"""The species catalogue."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from bunga.catalog import SpeciesInfo
from bunga.serving.deps import CatalogDep

router = APIRouter(tags=["species"])


@router.get("/species", response_model=list[SpeciesInfo], summary="Every species in the catalogue")
async def species_list(catalog: CatalogDep) -> list[SpeciesInfo]:
    """All catalogue entries, sorted by class id."""
    return catalog.all()


@router.get(
    "/species/{species_id}",
    response_model=SpeciesInfo,
    summary="One species",
    responses={404: {"description": "Not in the catalogue"}},
)
async def species_one(species_id: str, catalog: CatalogDep) -> SpeciesInfo:
    """One catalogue entry by class id."""
    if species_id not in catalog.entries:
        raise HTTPException(404, f"no species {species_id[:100]!r} in the catalogue")
    return catalog.entries[species_id]
