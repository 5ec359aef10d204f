-- Health of a NejumiEvaluation (nejumi.wandb.ai): an LLM evaluation that runs to completion.
-- In progress (no status yet, a new generation starting, Queued, Pending, Running): Progressing.
-- Succeeded: Healthy, or Degraded when its Degraded condition is True (the scores are not clean,
-- or the results were not stored: someone must look). Failed: Degraded.
-- Queued is Kueue waiting for quota, which resolves by itself: Progressing, not Suspended.
-- Uses the base library only, so it runs from argocd-cm without useOpenLibs.
local hs = {}

local function condition(conditionType)
  if obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == conditionType then
        return c
      end
    end
  end
  return nil
end

local function explain(reason, message)
  if reason ~= nil and reason ~= "" and message ~= nil and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= nil and reason ~= "" then
    return reason
  end
  return message or ""
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report the evaluation's status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Generation " .. generation .. " is starting: the status still describes generation " .. observed
  return hs
end

local phase = obj.status.phase
if phase == "Queued" then
  hs.status = "Progressing"
  hs.message = "Queued: " .. (obj.status.message or "waiting for admission")
elseif phase == "Pending" then
  hs.status = "Progressing"
  hs.message = explain(obj.status.reason, obj.status.message)
elseif phase == "Running" then
  hs.status = "Progressing"
  hs.message = "Running: " .. (obj.status.progress or obj.status.message or "evaluating")
elseif phase == "Succeeded" then
  local degraded = condition("Degraded")
  if degraded ~= nil and degraded.status == "True" then
    hs.status = "Degraded"
    hs.message = "Succeeded but degraded: " .. explain(degraded.reason, degraded.message)
  else
    hs.status = "Healthy"
    if obj.status.overallDisplay ~= nil then
      hs.message = "Succeeded: overall " .. obj.status.overallDisplay
    else
      hs.message = "Succeeded: " .. (obj.status.progress or "completed")
    end
  end
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = explain(obj.status.reason or "Failed", obj.status.message)
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. phase
end
return hs
