using Shepherd.Engine.Formats;
using System.Text.Json;
using Shepherd.Engine.Dispatch;
using Shepherd.Server.OpenAI;

namespace Shepherd.Server.Http;

/// <summary>A lane as the batch object and the dashboard show it: its limits, and whether it sends, and if not, since when, why and when it probes next.</summary>
internal static class LaneJson
{
    public static void Write(Utf8JsonWriter json, LaneState lane)
    {
        json.WriteStartObject();
        json.WriteString("upstream", lane.Upstream);
        json.WriteString("model", lane.Model);
        json.WriteString("state", StateName(lane.Condition));
        OpenAIJson.WriteTime(json, "since", lane.Halt?.Since);
        json.WriteString("reason", lane.Halt?.Reason);
        OpenAIJson.WriteTime(json, "next_probe_at", lane.Halt?.NextProbeAt);
        WriteRate(json, "requests_per_minute", lane.RequestsPerMinute);
        WriteRate(json, "tokens_per_minute", lane.TokensPerMinute);
        json.WriteNumber("concurrency_limit", lane.ConcurrencyLimit);
        json.WriteNumber("in_flight", lane.InFlight);
        OpenAIJson.WriteTime(json, "paused_until", lane.PausedUntil);
        json.WriteNumber("share", Math.Round(lane.Share, 3));
        json.WriteEndObject();
    }

    /// <summary>The word for a lane's condition: <c>sending</c>, <c>paused</c>, <c>down</c> or <c>key_refused</c>.</summary>
    public static string StateName(LaneCondition condition) => condition switch
    {
        LaneCondition.Paused => "paused",
        LaneCondition.Down => "down",
        LaneCondition.KeyRefused => "key_refused",
        _ => "sending",
    };

    private static void WriteRate(Utf8JsonWriter json, string name, double? perMinute) =>
        json.WriteNumberOrNull(name, perMinute is { } value ? Math.Round((decimal)value, 1) : null);
}
