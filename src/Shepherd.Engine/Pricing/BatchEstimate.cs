using System.Text.Json;
using Shepherd.Engine.Formats;

namespace Shepherd.Engine.Pricing;

/// <summary>What the requests for one model are expected to cost and how long its lane needs for them.</summary>
public sealed record ModelEstimate
{
    /// <summary>The model, as the requests name it (or as every request was priced, with <see cref="EstimateOptions.Model"/>).</summary>
    public required string Model { get; init; }

    /// <summary>Requests for the model.</summary>
    public required long Requests { get; init; }

    /// <summary>Prompt tokens, counted with the model's tokenizer.</summary>
    public required long PromptTokens { get; init; }

    /// <summary>
    /// Output tokens expected: the output limit where a request names one (an upper bound), the
    /// assumed share of the prompt where it does not, nothing for embeddings.
    /// </summary>
    public required long OutputTokens { get; init; }

    /// <summary>The part of <see cref="OutputTokens"/> that is assumed, not named by the requests.</summary>
    public required long AssumedOutputTokens { get; init; }

    /// <summary>Requests whose output is assumed because they name no output limit.</summary>
    public required long RequestsWithAssumedOutput { get; init; }

    /// <summary>The model's price; null when the table has none, and the costs are then 0 and not <see cref="Cost.Priced"/>.</summary>
    public required ModelPrice? Price { get; init; }

    /// <summary>The cost when sent one by one, at the list price.</summary>
    public required Cost Realtime { get; init; }

    /// <summary>The cost through the provider's batch API, at its discount (the same as <see cref="Realtime"/> where it has none).</summary>
    public required Cost Batch { get; init; }

    /// <summary>Requests per minute of the model's lanes; null when not known.</summary>
    public required long? RequestsPerMinute { get; init; }

    /// <summary>Tokens per minute of the model's lanes; null when not known.</summary>
    public required long? TokensPerMinute { get; init; }

    /// <summary>
    /// The minutes the lane's limits imply: requests over requests per minute, or prompt plus
    /// expected output tokens over tokens per minute, whichever is longer; null without limits.
    /// </summary>
    public required double? Minutes { get; init; }

    /// <summary>False when the model has no price: it is counted as $0, not guessed.</summary>
    public bool Priced => Price is not null;

    /// <summary>What the batch API saves, in US dollars.</summary>
    public decimal SavingUsd => Cost.ToUsd(Realtime.Nanos - Batch.Nanos);
}

/// <summary>
/// What an input is expected to cost, realtime and through a batch API, per model and in total,
/// and how long the lanes' limits make it take. Invalid lines are listed, not priced.
/// </summary>
public sealed record BatchEstimate
{
    /// <summary>The models, by name.</summary>
    public required IReadOnlyList<ModelEstimate> Models { get; init; }

    /// <summary>Valid requests read.</summary>
    public long Requests => Models.Sum(m => m.Requests);

    /// <summary>Prompt tokens of every model.</summary>
    public long PromptTokens => Models.Sum(m => m.PromptTokens);

    /// <summary>Expected output tokens of every model.</summary>
    public long OutputTokens => Models.Sum(m => m.OutputTokens);

    /// <summary>The part of <see cref="OutputTokens"/> that is assumed.</summary>
    public long AssumedOutputTokens => Models.Sum(m => m.AssumedOutputTokens);

    /// <summary>Requests whose output is assumed.</summary>
    public long RequestsWithAssumedOutput => Models.Sum(m => m.RequestsWithAssumedOutput);

    /// <summary>The realtime cost of every model; <see cref="Cost.Priced"/> only when every model is.</summary>
    public Cost Realtime => new(Models.Sum(m => m.Realtime.Nanos), Models.All(m => m.Priced));

    /// <summary>The batch cost of every model; <see cref="Cost.Priced"/> only when every model is.</summary>
    public Cost Batch => new(Models.Sum(m => m.Batch.Nanos), Models.All(m => m.Priced));

    /// <summary>
    /// The minutes the limits imply for the whole input: each model has its own lanes, which run
    /// side by side, so the slowest model's; null when no model has a known limit.
    /// </summary>
    public double? Minutes => Models.Max(m => m.Minutes);

    /// <summary>Requests the answer cache would answer (<see cref="EstimateOptions.Cache"/>): not in <see cref="Models"/>, not sent, not paid.</summary>
    public long Cached { get; init; }

    /// <summary>What the <see cref="Cached"/> answers cost when they were bought, at the list price: what the cache saves.</summary>
    public decimal CachedUsd { get; init; }

    /// <summary>Each tier's cost and the planner's mix for the deadline given (<see cref="EstimateOptions.Deadline"/>); null without one.</summary>
    public DeadlinePlan? Plan { get; init; }

    /// <summary>The share of the prompt assumed as output where a request names no limit.</summary>
    public required double AssumedOutputRatio { get; init; }

    /// <summary>The most output assumed for one request.</summary>
    public required int MaxAssumedOutputTokens { get; init; }

    /// <summary>The lines that are not valid requests, in line order; empty when every line is valid.</summary>
    public required IReadOnlyList<InputError> Errors { get; init; }

    /// <summary>How many problems were found beyond those <see cref="Errors"/> lists.</summary>
    public required long MoreErrors { get; init; }

    /// <summary>True when more lines were invalid than <see cref="Errors"/> holds.</summary>
    public bool ErrorsTruncated => MoreErrors > 0;

    /// <summary>True when every line was a valid request and there was at least one.</summary>
    public bool IsValid => Errors.Count == 0;

    /// <summary>The models without a price, by name.</summary>
    public IEnumerable<string> UnpricedModels => Models.Where(m => !m.Priced).Select(m => m.Model);

    /// <summary>What the batch API saves, in US dollars.</summary>
    public decimal SavingUsd => Cost.ToUsd(Realtime.Nanos - Batch.Nanos);

    /// <summary>
    /// Writes the estimate as one JSON object with snake_case fields, as <c>shepherd estimate
    /// --json</c> prints it and <c>POST /v1/batches/estimate</c> answers it.
    /// </summary>
    public void WriteTo(Utf8JsonWriter json)
    {
        ArgumentNullException.ThrowIfNull(json);
        json.WriteStartObject();
        json.WriteString("object", "batch.estimate");
        json.WriteNumber("requests", Requests);
        json.WriteNumber("prompt_tokens", PromptTokens);
        json.WriteNumber("output_tokens", OutputTokens);
        json.WriteNumber("assumed_output_tokens", AssumedOutputTokens);
        json.WriteNumber("requests_with_assumed_output", RequestsWithAssumedOutput);
        json.WriteNumber("realtime_usd", Realtime.Usd);
        json.WriteNumber("batch_usd", Batch.Usd);
        json.WriteNumber("saving_usd", SavingUsd);
        json.WriteBoolean("priced", Realtime.Priced);
        json.WriteNumber("cached", Cached);
        json.WriteNumber("cached_usd", CachedUsd);
        json.WriteStartArray("unpriced_models");
        foreach (var model in UnpricedModels)
        {
            json.WriteStringValue(model);
        }

        json.WriteEndArray();
        WriteMinutes(json, Minutes);
        json.WriteStartObject("assumed_output");
        json.WriteNumber("ratio", AssumedOutputRatio);
        json.WriteNumber("max_tokens", MaxAssumedOutputTokens);
        json.WriteEndObject();
        json.WriteStartArray("models");
        foreach (var model in Models)
        {
            WriteModel(json, model);
        }

        json.WriteEndArray();
        if (Plan is { } plan)
        {
            plan.WriteTo(json);
        }

        json.WriteStartArray("errors");
        foreach (var error in Errors)
        {
            error.WriteTo(json);
        }

        json.WriteEndArray();
        json.WriteBoolean("errors_truncated", ErrorsTruncated);
        json.WriteNumber("more_errors", MoreErrors);
        json.WriteEndObject();
    }

    private static void WriteModel(Utf8JsonWriter json, ModelEstimate model)
    {
        json.WriteStartObject();
        json.WriteString("model", model.Model);
        json.WriteNumber("requests", model.Requests);
        json.WriteNumber("prompt_tokens", model.PromptTokens);
        json.WriteNumber("output_tokens", model.OutputTokens);
        json.WriteNumber("assumed_output_tokens", model.AssumedOutputTokens);
        json.WriteNumber("requests_with_assumed_output", model.RequestsWithAssumedOutput);
        json.WriteBoolean("priced", model.Priced);
        json.WriteNumber("realtime_usd", model.Realtime.Usd);
        json.WriteNumber("batch_usd", model.Batch.Usd);
        json.WriteNumber("saving_usd", model.SavingUsd);
        if (model.Price is { } price)
        {
            json.WriteStartObject("price");
            json.WriteNumber("input", price.Input);
            json.WriteNumber("output", price.Output);
            json.WriteNumberOrNull("cached_input", price.CachedInput);

            json.WriteNumber("batch_discount", price.BatchDiscount);
            json.WriteEndObject();
        }
        else
        {
            json.WriteNull("price");
        }

        json.WriteNumberOrNull("requests_per_minute", model.RequestsPerMinute);
        json.WriteNumberOrNull("tokens_per_minute", model.TokensPerMinute);
        WriteMinutes(json, model.Minutes);
        json.WriteEndObject();
    }

    private static void WriteMinutes(Utf8JsonWriter json, double? minutes) =>
        json.WriteNumberOrNull("minutes", minutes is { } value ? Math.Round(value, 3) : null);
}
