using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Native;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Upstreams;
using Shepherd.Server.Batches;
using Shepherd.Server.Http;

namespace Shepherd.Server.OpenAI;

/// <summary>
/// <c>POST /v1/batches/estimate</c>: what a batch would cost and how long the server's lane
/// limits make it take, before it is created. The body names an uploaded file of the caller
/// (<c>input_file_id</c>, with an optional <c>model</c> that prices every line as that model, as
/// <c>shepherd estimate --model</c> does) or holds the requests inline, in the shape of an inline
/// create, whose <c>model</c> means what it means there: the model of the requests that name
/// none. Either way the estimate is of what a create of the same body would send. The answer is
/// the estimate as <c>shepherd estimate --json</c> prints it.
/// </summary>
internal sealed class EstimateApi(FileService files, CreateBodies bodies, BatchService batches, Dispatcher dispatcher, BatchEstimator estimator, IReadOnlyList<UpstreamOptions> upstreams, NativeBatchOptions native)
{
    private const string NotPriced = "The batch was not priced";

    public void Map(IEndpointRouteBuilder app) => app.MapGroup("/v1/batches").MapPost("/estimate", EstimateAsync);

    private async Task<JsonBody> EstimateAsync(Caller caller, HttpRequest request, CancellationToken cancellationToken)
    {
        using var body = await bodies.ReadAsync(request, cancellationToken);
        var estimate = body.HasRequests
            ? await EstimateInlineAsync(body, caller, cancellationToken)
            : await EstimateFileAsync(body, caller, cancellationToken);
        return new JsonBody(estimate.WriteTo);
    }

    private async Task<BatchEstimate> EstimateFileAsync(CreateBody body, Caller caller, CancellationToken cancellationToken)
    {
        // The fields of a create from a file are accepted, so a create's body can be priced as it is.
        Fields.OnlyKnown(body.Fields, "input_file_id", "model", "endpoint", "completion_window", "metadata", "deadline");
        var fileId = Fields.String(body.Fields, "input_file_id", required: true)!;
        var options = Options(Model(body), Fields.String(body.Fields, "endpoint") is { } endpoint ? BatchesApi.Endpoint(endpoint) : null, Deadline(body), caller,
            batches.CacheUseOf(Fields.Metadata(body.Fields)));
        var file = await files.GetInputAsync(caller, fileId, cancellationToken);
        BatchEstimate estimate;
        await using (var input = await files.OpenAsync(file, cancellationToken))
        {
            estimate = await estimator.EstimateAsync(input, options, cancellationToken);
        }

        if (!estimate.IsValid)
        {
            var problems = estimate.Errors.Select(e => e.ToString()).ToList();
            throw ApiException.Rejected(problems, estimate.MoreErrors, "input_file_id", estimate.Errors[0].Code, $"File '{file.Id}' was not priced");
        }

        return estimate;
    }

    private async Task<BatchEstimate> EstimateInlineAsync(CreateBody body, Caller caller, CancellationToken cancellationToken)
    {
        // The fields of an inline create are accepted, so a create's body can be priced as it is.
        Fields.OnlyKnown(body.Fields, BatchesApi.InlineFields);
        var endpoint = BatchesApi.Endpoint(Fields.String(body.Fields, "endpoint") ?? BatchEndpoints.ChatCompletions);
        if (body.RequestCount == 0)
        {
            throw ApiException.BadRequest("\"requests\" is empty; there is nothing to price.", "requests", InputErrorCodes.EmptyFile);
        }

        // As in a create, the batch's model fills in the requests that name none; each request is priced as the model it names.
        var model = Model(body);
        var options = Options(null, endpoint, Deadline(body), caller,
            batches.CacheUseOf(body.Fields));
        using var lines = await bodies.ConvertAsync(body, "estimate", endpoint, model, NotPriced, cancellationToken);
        BatchEstimate estimate;
        await using (var input = File.OpenRead(lines.Path))
        {
            estimate = await estimator.EstimateAsync(input, options, cancellationToken);
        }

        return estimate.IsValid && lines.Refused.Count == 0
            ? estimate
            : throw RequestProblems.Rejected(RequestProblems.Together(lines.Refused, estimate.Errors), estimate.MoreErrors, NotPriced);
    }

    private static string? Model(CreateBody body)
    {
        var model = Fields.String(body.Fields, "model");
        return model is not null && string.IsNullOrWhiteSpace(model)
            ? throw ApiException.BadRequest("\"model\" cannot be blank.", "model")
            : model;
    }

    /// <summary>The deadline to plan for, as a create reads it (<c>deadline</c> or <c>completion_window</c>); none prices no plan.</summary>
    private static TimeSpan? Deadline(CreateBody body) => Fields.Deadline(body.Fields).Window;

    /// <summary>The options of an estimate for <paramref name="caller"/>: what the server's answer cache holds for its tenant is left out, as a create of the same body would use it.</summary>
    private EstimateOptions Options(string? model, string? endpoint, TimeSpan? deadline, Caller caller, CacheUse cache) => new()
    {
        Model = model,
        Endpoint = endpoint,
        Upstreams = upstreams,
        MaxLineBytes = bodies.MaxLineBytes,
        Deadline = deadline,
        Native = native,
        Cache = cache == CacheUse.Off ? null : dispatcher.AnswerCache,
        Tenant = caller.Owner,
        CacheUse = cache,
    };
}
