namespace Shepherd.Engine.Model;

/// <summary>What a batch's answers show over time: for a dashboard.</summary>
/// <param name="Timeline">Answers recorded per time bucket, oldest first.</param>
/// <param name="Errors">Failed items by kind (<c>HTTP 400</c>, or Shepherd's code), most first.</param>
/// <param name="LatenciesMs">The latency of every answer that came over HTTP, in milliseconds, ascending.</param>
public sealed record BatchActivity(IReadOnlyList<ActivityBucket> Timeline, IReadOnlyList<ErrorCount> Errors, IReadOnlyList<int> LatenciesMs);

/// <summary>Answers recorded in one time bucket.</summary>
/// <param name="Start">The bucket's start.</param>
/// <param name="Requests">Answers recorded in it.</param>
/// <param name="Tokens">Their input and output tokens.</param>
/// <param name="Failed">How many of them ended the item failed.</param>
public sealed record ActivityBucket(DateTimeOffset Start, long Requests, long Tokens, long Failed);

/// <summary>How many items failed one way.</summary>
/// <param name="Kind">The way: <c>HTTP 400</c>, or Shepherd's code such as <c>request_timeout</c>.</param>
/// <param name="Count">How many.</param>
public sealed record ErrorCount(string Kind, long Count);
