-- Health of a NejumiLeaderboard (nejumi.wandb.ai): a board the operator keeps current.
-- Not computed yet (no status, or a spec edit not taken up): Progressing. Stalled (a namespace the
-- policy refuses, a failed computation): Degraded. A gate failed (GatesPassed=False): Degraded,
-- naming the evaluations (a release gate someone must look at). The page not written
-- (Degraded=True): Degraded. Computed: Healthy, with the ranked and unfinished counts.
-- Uses the base library only, so it runs from argocd-cm without useOpenLibs.
local hs = {}

local function condition(conditionType)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == conditionType then
        return c
      end
    end
  end
  return nil
end

local generation = obj.metadata.generation
local observed = nil
if obj.status ~= nil then
  observed = obj.status.observedGeneration
end
if observed == nil or observed == 0 or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to compute the leaderboard"
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
local gates = condition("GatesPassed")
if gates ~= nil and gates.status == "False" then
  hs.status = "Degraded"
  hs.message = "GateFailed: " .. (gates.message or "")
  return hs
end
local degraded = condition("Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.reason .. ": " .. (degraded.message or "")
  return hs
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
hs.status = "Progressing"
hs.message = obj.status.message or "Computing the leaderboard"
return hs
