"""The species catalogue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from bunga.catalog import SpeciesInfo
from bunga.serving.deps import CatalogDep, StoreDep
from bunga.serving.references import reference_jpeg

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


@router.get(
    "/species/{species_id}/photo",
    response_class=Response,
    summary="The photo model's reference photo of a species",
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No reference photo"}},
)
async def species_photo(
    species_id: str,
    store: StoreDep,
    catalog: CatalogDep,
    version: Annotated[str | None, Query(max_length=100, description="Photo model version")] = None,
) -> Response:
    """A small typical training photo of the species, chosen when the model was trained; its licence
    and credit come with each prediction (``top[].reference``). A species the model does not know yet
    shows the photo the curator gave when adding it."""
    jpeg = reference_jpeg(store, species_id, version)
    if jpeg is None and version is None:
        jpeg = catalog.photos.get(species_id)
        if jpeg is not None:
            return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})
    if jpeg is None:
        raise HTTPException(404, f"the photo model has no reference photo of {species_id[:100]!r}")
    cache = "public, max-age=86400, immutable" if version else "public, max-age=300"
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": cache})
