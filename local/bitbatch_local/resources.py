"""Create in moto the resources that template.yaml declares, with local names."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import boto3

# The submitter's timeout in template.yaml is 30 s; the queue keeps the 6 x rule.
SUBMIT_QUEUE_VISIBILITY_SECONDS = 180
MAX_RECEIVE_COUNT = 5


@dataclass(frozen=True)
class StackResources:
    bucket: str
    runs_table: str
    idempotency_table: str
    submit_queue_url: str
    submit_dead_letter_queue_url: str
    webhook_secret_arn: str
    token_secret_arn: str
    job_queue_arn: str
    job_definition_arn: str
    sender_address: str
    run_link_key_secret_arn: str
    api_base_url_parameter: str  # SSM parameter name; store_api_base_url fills it once the API listens


def create_resources(
    webhook_secret: str,
    bitbucket_token: str,
    sender_address: str,
    name_prefix: str = "bitbatch",
) -> StackResources:
    """Create every resource in the moto server boto3 currently points at."""
    s3 = boto3.client("s3")
    bucket = f"{name_prefix}-artifacts-local"
    s3.create_bucket(Bucket=bucket)

    dynamodb = boto3.client("dynamodb")
    runs_table = f"{name_prefix}-runs"
    dynamodb.create_table(
        TableName=runs_table,
        AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=runs_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    idempotency_table = f"{name_prefix}-idempotency"
    dynamodb.create_table(
        TableName=idempotency_table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=idempotency_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )

    sqs = boto3.client("sqs")
    dead_letter_url = sqs.create_queue(QueueName=f"{name_prefix}-submit-dlq")["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    submit_url = sqs.create_queue(
        QueueName=f"{name_prefix}-submit",
        Attributes={
            "VisibilityTimeout": str(SUBMIT_QUEUE_VISIBILITY_SECONDS),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}),
        },
    )["QueueUrl"]

    secretsmanager = boto3.client("secretsmanager")
    webhook_secret_arn = secretsmanager.create_secret(
        Name=f"{name_prefix}/webhook-secret", SecretString=webhook_secret
    )["ARN"]
    token_secret_arn = secretsmanager.create_secret(
        Name=f"{name_prefix}/bitbucket-token", SecretString=bitbucket_token
    )["ARN"]
    # 64 characters, like the generated RunLinkKeySecret in template.yaml.
    run_link_key_secret_arn = secretsmanager.create_secret(
        Name=f"{name_prefix}/run-link-key", SecretString=secrets.token_urlsafe(48)
    )["ARN"]

    boto3.client("sesv2").create_email_identity(EmailIdentity=sender_address)

    job_queue_arn, job_definition_arn = _create_batch(name_prefix, bucket)
    return StackResources(
        bucket=bucket,
        runs_table=runs_table,
        idempotency_table=idempotency_table,
        submit_queue_url=submit_url,
        submit_dead_letter_queue_url=dead_letter_url,
        webhook_secret_arn=webhook_secret_arn,
        token_secret_arn=token_secret_arn,
        job_queue_arn=job_queue_arn,
        job_definition_arn=job_definition_arn,
        sender_address=sender_address,
        run_link_key_secret_arn=run_link_key_secret_arn,
        api_base_url_parameter=f"/{name_prefix}/api-base-url",
    )


def store_api_base_url(parameter_name: str, api_base_url: str) -> None:
    """Store the HTTP API's URL where the notifier reads it, as ApiBaseUrlParameter does in template.yaml."""
    boto3.client("ssm").put_parameter(Name=parameter_name, Value=api_base_url, Type="String", Overwrite=True)


def _create_batch(name_prefix: str, bucket: str) -> tuple[str, str]:
    # moto needs a service role, subnets and security groups that exist,
    # where CloudFormation would accept the template's parameters as they are.
    ec2 = boto3.client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group_id = ec2.create_security_group(GroupName=f"{name_prefix}-jobs", Description="bitbatch jobs", VpcId=vpc_id)[
        "GroupId"
    ]
    role_arn = boto3.client("iam").create_role(
        RoleName=f"{name_prefix}-batch-service",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]

    batch = boto3.client("batch")
    environment_arn = batch.create_compute_environment(
        computeEnvironmentName=f"{name_prefix}-fargate",
        type="MANAGED",
        state="ENABLED",
        computeResources={"type": "FARGATE", "maxvCpus": 4, "subnets": [subnet_id], "securityGroupIds": [group_id]},
        serviceRole=role_arn,
    )["computeEnvironmentArn"]
    job_queue_arn = batch.create_job_queue(
        jobQueueName=f"{name_prefix}-jobs",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment_arn}],
    )["jobQueueArn"]
    job_definition_arn = batch.register_job_definition(
        jobDefinitionName=f"{name_prefix}-report",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "bitbatch-job:local",
            "command": [],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
            "executionRoleArn": role_arn,
            "environment": [{"name": "ARTIFACTS_BUCKET", "value": bucket}],
        },
        timeout={"attemptDurationSeconds": 3600},
    )["jobDefinitionArn"]
    return job_queue_arn, job_definition_arn
